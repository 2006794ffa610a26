"""A prefix trie over items' semantic IDs, for beam search that only ever yields real items."""

import numpy as np
import torch


class PrefixTrie:
    """Trie of ``codes`` ``[n_items, L]`` (row i is item ``item_ids[i]``), stored as padded arrays.

    Node 0 is the root. ``children(level, nodes)`` gives, for each node at depth ``level``, its
    allowed next codes and child nodes (padded, with a validity mask); ``leaf_item[node]`` is the item
    a full-length path ends in.
    """

    def __init__(self, codes, item_ids=None):
        codes = np.asarray(codes)
        item_ids = np.arange(len(codes)) if item_ids is None else np.asarray(item_ids)
        self.n_levels = codes.shape[1]
        node_of_prefix = {(): 0}
        children = [{}]  # node -> {code: child node}
        leaf_item = {}
        for item, row in zip(item_ids, codes):
            node = 0
            for depth in range(self.n_levels):
                code = int(row[depth])
                nxt = children[node].get(code)
                if nxt is None:
                    nxt = len(children)
                    children[node][code] = nxt
                    children.append({})
                    node_of_prefix[tuple(int(c) for c in row[: depth + 1])] = nxt
                node = nxt
            if node in leaf_item:
                raise ValueError("Two items share one semantic ID; resolve collisions before building the trie.")
            leaf_item[node] = int(item)
        width = max(len(c) for c in children)
        n_nodes = len(children)
        self.child_codes = torch.zeros(n_nodes, width, dtype=torch.long)
        self.child_nodes = torch.zeros(n_nodes, width, dtype=torch.long)
        self.child_valid = torch.zeros(n_nodes, width, dtype=torch.bool)
        for node, mapping in enumerate(children):
            for slot, (code, child) in enumerate(sorted(mapping.items())):
                self.child_codes[node, slot] = code
                self.child_nodes[node, slot] = child
                self.child_valid[node, slot] = True
        self.leaf_item = torch.full((n_nodes,), -1, dtype=torch.long)
        for node, item in leaf_item.items():
            self.leaf_item[node] = item

    def to(self, device):
        for name in ("child_codes", "child_nodes", "child_valid", "leaf_item"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def children(self, nodes):
        """``(codes, child_nodes, valid)``, each ``nodes.shape + [width]``."""
        return self.child_codes[nodes], self.child_nodes[nodes], self.child_valid[nodes]


def constrained_beam_search(trie, level_scorer, batch_size, beam_size, device=None):
    """Beam search over the trie; ``level_scorer(level, codes_so_far [B, W, level], parent)`` -> ``[B, W, V]``
    log-probs, where ``parent`` ``[B, W]`` says which beam of the previous call each beam extends (``None`` at
    level 0), so that a scorer with per-beam state (a decoder's key/value cache) can reorder it.

    Returns ``(item_ids [B, beam], scores [B, beam])`` sorted best first; slots that could not be
    filled (fewer valid items than the beam) have item -1 and score -inf.
    """
    nodes = torch.zeros(batch_size, 1, dtype=torch.long, device=device)
    scores = torch.zeros(batch_size, 1, device=device)
    prefix = torch.zeros(batch_size, 1, 0, dtype=torch.long, device=device)
    parent = None
    for level in range(trie.n_levels):
        log_probs = level_scorer(level, prefix, parent)  # [B, W, V]
        codes, child, valid = trie.children(nodes)  # [B, W, C]
        step = log_probs.gather(-1, codes.clamp(max=log_probs.size(-1) - 1))
        cand = (scores.unsqueeze(-1) + step).masked_fill(~valid, float("-inf"))
        flat = cand.reshape(batch_size, -1)
        k = min(beam_size, flat.size(1))
        scores, index = flat.topk(k, dim=1)
        width = codes.size(-1)
        parent = index // width
        chosen_codes = codes.reshape(batch_size, -1).gather(1, index)
        nodes = child.reshape(batch_size, -1).gather(1, index)
        prefix = torch.cat([prefix.gather(1, parent.unsqueeze(-1).expand(-1, -1, prefix.size(-1))),
                            chosen_codes.unsqueeze(-1)], dim=-1)
    items = trie.leaf_item[nodes].masked_fill(torch.isinf(scores), -1)
    return items, scores
