"""RQ-VAE (TIGER): an MLP autoencoder whose latent is quantized by residual codebooks, coarse to fine.

The encoder maps an item embedding to a small latent; level l picks the code nearest to what levels
< l left unexplained; the decoder reconstructs the embedding from the sum of the chosen codes. Codes
are trained with the VQ-VAE codebook and commitment losses, the encoder through the straight-through
estimator, and each codebook starts from k-means on the first batch's residuals (TIGER's remedy for
codebook collapse).
"""

import numpy as np
import torch
from torch import nn

from recbole_lamia.quantizer.base import AbstractQuantizer, cap_codebook_size, register_quantizer
from recbole_lamia.quantizer.kmeans import train_kmeans

DEFAULT_HIDDEN_DIMS = (512, 256, 128)


def _mlp(dims):
    """Linear layers through ``dims`` with ReLU between them (none after the last)."""
    layers = []
    for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(dims) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _squared_distances(x, codebook):
    """``[n, k]`` squared Euclidean distances from rows of ``x`` to the codes."""
    return (x * x).sum(1, keepdim=True) - 2 * x @ codebook.t() + (codebook * codebook).sum(1)[None, :]


@register_quantizer("rqvae")
class RQVAEQuantizer(AbstractQuantizer):
    """``rq_levels`` residual codebooks in the latent space of an MLP autoencoder; codes ``[n, levels]``.

    Config (all optional): ``rqvae_hidden_dims`` (encoder widths, default 512-256-128; the decoder
    mirrors them), ``rqvae_latent_dim`` (32), ``rqvae_beta`` (commitment weight, 0.25),
    ``rqvae_learning_rate`` (Adam, 1e-3), ``rqvae_epochs`` (100), ``rqvae_batch_size`` (1024),
    ``rqvae_reset_dead_codes`` (True: after each epoch, codes no item chose restart on a random residual;
    not in the TIGER paper, but without it most first-level codes die early), and the shared
    ``codebook_size``, ``rq_levels``, ``kmeans_iterations`` (for the codebook initialisation).
    """

    LEVEL_OPTIONS = ("rq_levels",)

    def __init__(self, params):
        super().__init__(params)
        self.levels = int(params.get("rq_levels") or 3)
        self.latent_dim = int(params.get("rqvae_latent_dim") or 32)
        self.hidden_dims = [int(d) for d in (params.get("rqvae_hidden_dims") or DEFAULT_HIDDEN_DIMS)]
        self.beta = float(params.get("rqvae_beta", 0.25))
        self.learning_rate = float(params.get("rqvae_learning_rate") or 1e-3)
        self.epochs = int(params.get("rqvae_epochs") or 100)
        self.batch_size = int(params.get("rqvae_batch_size") or 1024)
        self.reset_dead_codes = bool(params.get("rqvae_reset_dead_codes", True))
        self.encoder = self.decoder = self.codebooks = None

    # --- training ---------------------------------------------------------------------------------

    def fit(self, embeddings):
        x = torch.from_numpy(np.ascontiguousarray(embeddings.reshape(len(embeddings), -1), dtype=np.float32))
        if not torch.isfinite(x).all():
            raise FloatingPointError("RQ-VAE input embeddings contain NaN or inf values; the item embedder "
                                     "produced invalid vectors, so there is nothing meaningful to quantize.")
        n, dim = x.shape
        k = cap_codebook_size(int(self.params["codebook_size"]), n, self.logger)
        self.codebook_sizes = [k] * self.levels
        # Seed a private RNG stream so that fitting neither depends on nor disturbs the global one.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.encoder = _mlp([dim, *self.hidden_dims, self.latent_dim])
            self.decoder = _mlp([self.latent_dim, *reversed(self.hidden_dims), dim])
        self.codebooks = nn.Parameter(torch.zeros(self.levels, k, self.latent_dim))
        generator = torch.Generator().manual_seed(self.seed)
        order = torch.randperm(n, generator=generator)
        # k-means needs at least k points, even when the batch is smaller than the codebook.
        self._init_codebooks(x[order[: max(self.batch_size, k)]])

        parameters = [*self.encoder.parameters(), *self.decoder.parameters(), self.codebooks]
        optimizer = torch.optim.Adam(parameters, lr=self.learning_rate)
        self.history = []
        # Importing RecBole's SINE model switches autograd anomaly detection on for the whole process,
        # which slows every backward pass; the divergence check in _train_epoch does its job here.
        with torch.autograd.set_detect_anomaly(False):
            for epoch in range(1, self.epochs + 1):
                self.encoder.train()
                self.decoder.train()
                record = self._train_epoch(x, order, optimizer, epoch)
                self.history.append(record)
                self.logger.info(
                    f"RQ-VAE epoch {epoch}/{self.epochs}: loss={record['loss']:.5f} "
                    f"reconstruction={record['reconstruction_loss']:.5f} "
                    f"quantization={record['quantization_loss']:.5f} "
                    f"code usage per level={record['code_usage_per_level']} "
                    f"dead codes per level={record['dead_codes_per_level']}"
                )
                order = torch.randperm(n, generator=generator)
        self.encoder.eval()
        self.decoder.eval()
        return self

    def _init_codebooks(self, x):
        """Each level's codebook = k-means centroids of that level's residuals on ``x``."""
        niter = int(self.params.get("kmeans_iterations") or 25)
        with torch.no_grad():
            residual = self.encoder(x)
            for level in range(self.levels):
                centroids = torch.from_numpy(
                    train_kmeans(residual.numpy(), self.codebook_sizes[level], self.seed + level, niter).centroids)
                self.codebooks[level] = centroids
                residual = residual - centroids[_squared_distances(residual, centroids).argmin(1)]

    def _quantize(self, latent):
        """``(quantized [b, latent], codes [b, levels], codebook + commitment loss, residuals per level)``."""
        residual, quantized = latent, torch.zeros_like(latent)
        codes, residuals, loss = [], [], latent.new_zeros(())
        for level in range(self.levels):
            residuals.append(residual.detach())
            codebook = self.codebooks[level]
            code = _squared_distances(residual.detach(), codebook.detach()).argmin(1)
            chosen = codebook[code]
            # Codebook loss moves codes towards the (fixed) residuals; commitment keeps the encoder near them.
            loss = loss + ((residual.detach() - chosen) ** 2).sum(-1).mean()
            loss = loss + self.beta * ((residual - chosen.detach()) ** 2).sum(-1).mean()
            quantized = quantized + chosen
            residual = residual - chosen.detach()
            codes.append(code)
        return quantized, torch.stack(codes, 1), loss, residuals

    def _train_epoch(self, x, order, optimizer, epoch):
        n = len(x)
        totals = {"loss": 0.0, "reconstruction_loss": 0.0, "quantization_loss": 0.0}
        counts = torch.zeros(self.levels, self.codebook_sizes[0], dtype=torch.long)
        for start in range(0, n, self.batch_size):
            batch = x[order[start:start + self.batch_size]]
            latent = self.encoder(batch)
            quantized, codes, quantization_loss, residuals = self._quantize(latent)
            # Straight-through: the decoder sees the codes, the gradient reaches the encoder unchanged.
            decoded = self.decoder(latent + (quantized - latent).detach())
            reconstruction_loss = ((decoded - batch) ** 2).sum(-1).mean()
            loss = reconstruction_loss + quantization_loss
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"RQ-VAE training diverged in epoch {epoch} (batch starting at item {start}): the loss is "
                    f"{loss.item()}. Lower rqvae_learning_rate (now {self.learning_rate}) or check the embeddings.")
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            size = len(batch)
            totals["loss"] += loss.item() * size
            totals["reconstruction_loss"] += reconstruction_loss.item() * size
            totals["quantization_loss"] += quantization_loss.item() * size
            for level in range(self.levels):
                counts[level] += torch.bincount(codes[:, level], minlength=counts.size(1))
        usage = (counts > 0).sum(1).tolist()
        record = {"epoch": epoch, **{key: value / n for key, value in totals.items()}}
        record["code_usage_per_level"] = [int(u) for u in usage]
        record["dead_codes_per_level"] = [int(k - u) for k, u in zip(self.codebook_sizes, usage)]
        if self.reset_dead_codes and epoch < self.epochs:
            self._reset_dead_codes(counts == 0, residuals)
        return record

    def _reset_dead_codes(self, dead, residuals):
        """Move codes no item chose this epoch onto residuals of random items of the last batch.

        A dead code gets no gradient from the codebook loss, so without this it stays dead for good.
        """
        generator = torch.Generator().manual_seed(self.seed + len(self.history))
        with torch.no_grad():
            for level in range(self.levels):
                dead_codes = dead[level].nonzero().squeeze(1)
                if len(dead_codes):
                    pick = torch.randint(len(residuals[level]), (len(dead_codes),), generator=generator)
                    self.codebooks[level, dead_codes] = residuals[level][pick]

    # --- inference --------------------------------------------------------------------------------

    def _check_fitted(self):
        if self.encoder is None:
            raise RuntimeError("RQVAEQuantizer is not fitted; call fit first.")

    def _walk(self, embeddings, n_candidates):
        """Ranked codes and distances per level, ``([n, L, C], [n, L, C])``; the walk follows rank 0."""
        self._check_fitted()
        x = torch.from_numpy(np.ascontiguousarray(embeddings.reshape(len(embeddings), -1), dtype=np.float32))
        n_candidates = min(n_candidates, self.codebook_sizes[0])
        dists, codes = [], []
        with torch.no_grad():
            residual = self.encoder(x)
            for codebook in self.codebooks.detach():
                dist = _squared_distances(residual, codebook)
                # A stable sort keeps ties in code order, so encoding is deterministic.
                ranked = torch.sort(dist, dim=1, stable=True).indices[:, :n_candidates]
                dists.append(dist.gather(1, ranked))
                codes.append(ranked)
                residual = residual - codebook[ranked[:, 0]]
        return torch.stack(dists, 1).numpy(), torch.stack(codes, 1).numpy().astype(np.int64)

    def encode(self, embeddings):
        return self._walk(embeddings, 1)[1][:, :, 0]

    def candidates(self, embeddings, n_candidates):
        dists, codes = self._walk(embeddings, n_candidates)
        return codes, dists - dists[:, :, :1]

    def decode(self, codes):
        """Decoded embeddings ``[n, h*d]`` of ``codes`` ``[n, >= levels]`` (extra columns are ignored)."""
        self._check_fitted()
        codes = torch.as_tensor(np.asarray(codes)[:, : self.levels], dtype=torch.long)
        with torch.no_grad():
            latent = sum(self.codebooks[level][codes[:, level]] for level in range(self.levels))
            return self.decoder(latent).numpy()

    def reconstruction_error(self, embeddings, codes):
        """Squared error between the input and the decoded codes, summed over features, averaged over items.

        The per-item sum (not the per-feature mean) matches the other quantizers' diagnostics.
        """
        x = embeddings.reshape(len(embeddings), -1)
        return float(((x - self.decode(codes)) ** 2).sum(-1).mean())
