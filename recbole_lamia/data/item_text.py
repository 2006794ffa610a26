"""Turn an item's feature fields into one text string."""

import re
from logging import getLogger

from recbole.utils import FeatureType, set_color

from recbole_lamia.utils.errors import UserInputError

# A RecBole Amazon category list reads "'Skin Care', 'Face'" once its token_seq is joined back.
_QUOTED_PHRASE = re.compile(r"'([^']*)'")


def clean_category_style(value):
    """``"'Skin Care', 'Face'"`` -> ``"Skin Care, Face"``; other strings come back stripped."""
    phrases = _QUOTED_PHRASE.findall(value)
    if phrases and _QUOTED_PHRASE.sub("", value).replace(",", "").strip() == "":
        return ", ".join(p.strip() for p in phrases if p.strip())
    return value.strip()


def _as_list(column):
    """A feature column (pandas Series before ``build()``, tensor after) as a list of rows."""
    return column.tolist() if hasattr(column, "tolist") else list(column)


class ItemTextBuilder:
    """Builds one text per item index of a RecBole dataset from its configured item fields.

    Args:
        text_fields (list[str]): item fields to read, in order (``item_text_fields`` in config).
        separator (str): placed between the non-empty field values.
        ignore_values (list[str]): values treated as empty (e.g. a literal ``Unknown`` brand).
        fallback (str): template for an item with no text at all; ``{token}`` is its raw item id.
    """

    def __init__(self, text_fields, separator=". ", ignore_values=("Unknown",), fallback="item {token}"):
        if not text_fields:
            raise UserInputError("item_text_fields is empty: name at least one item field that holds text.")
        self.text_fields = list(text_fields)
        self.separator = separator
        self.ignore_values = set(ignore_values or ()) | {"[PAD]", ""}
        self.fallback = fallback
        self.logger = getLogger()

    def check_fields(self, dataset):
        """Raise a ValueError naming any configured text field the dataset's item features lack."""
        existing = [] if dataset.item_feat is None else list(dataset.item_feat.columns)
        missing = [f for f in self.text_fields if f not in existing]
        if missing:
            raise UserInputError(
                f"item_text_fields {missing} not found in the item features of dataset "
                f"[{dataset.dataset_name}]. Item fields that exist: {existing}. "
                "Check item_text_fields, and that load_col loads them from the .item file."
            )

    def field_values(self, dataset):
        """Return ``{field: [str per item index]}`` with original strings restored."""
        self.check_fields(dataset)
        # Rows of item_feat are not guaranteed to be in item-index order, nor complete.
        row_items = [int(i) for i in _as_list(dataset.item_feat[dataset.iid_field])]
        values = {}
        for field in self.text_fields:
            column = _as_list(dataset.item_feat[field])
            ftype = dataset.field2type[field]
            if ftype == FeatureType.TOKEN:
                id2token = dataset.field2id_token[field]
                strings = [str(id2token[int(i)]) for i in column]
            elif ftype == FeatureType.TOKEN_SEQ:
                id2token = dataset.field2id_token[field]
                strings = [" ".join(str(id2token[int(i)]) for i in row if i != 0) for row in column]
            elif ftype == FeatureType.FLOAT_SEQ:
                strings = [" ".join(f"{v:g}" for v in row if v != 0) for row in column]
            else:  # FLOAT
                strings = [f"{float(v):g}" for v in column]
            per_item = [""] * dataset.item_num
            for item, string in zip(row_items, strings):
                per_item[item] = self._clean(string)
            values[field] = per_item
        return values

    def _clean(self, value):
        value = clean_category_style(value)
        return "" if value in self.ignore_values else value

    def build(self, dataset):
        """Return ``(texts, field_spans)`` for item indices ``0..item_num-1``.

        ``field_spans[i]`` lists ``(field_index, start_char, end_char)`` of each field in ``texts[i]``,
        so that text views can drop a whole field. Index 0 is RecBole's padding item and gets ``""``.
        Items with no text get the fallback, and their count is logged as a warning.
        """
        values = self.field_values(dataset)
        item_tokens = dataset.field2id_token[dataset.iid_field]
        texts, spans, n_fallback = [""], [[]], 0
        for index in range(1, dataset.item_num):
            parts, item_spans, cursor = [], [], 0
            for field_index, field in enumerate(self.text_fields):
                value = values[field][index]
                if not value:
                    continue
                if parts:
                    cursor += len(self.separator)
                item_spans.append((field_index, cursor, cursor + len(value)))
                parts.append(value)
                cursor += len(value)
            text = self.separator.join(parts)
            if not text:
                n_fallback += 1
                text = self.fallback.format(token=item_tokens[index])
                item_spans = [(-1, 0, len(text))]
            texts.append(text)
            spans.append(item_spans)
        if n_fallback and n_fallback == dataset.item_num - 1:
            raise UserInputError(f"every item's text is empty in item_text_fields {self.text_fields} of dataset "
                                 f"[{dataset.dataset_name}]: the tokenizer has nothing to read. Name fields that "
                                 "hold text, and check that load_col loads them.")
        if n_fallback:
            self.logger.warning(
                set_color(f"{n_fallback} items have no text in {self.text_fields}; ", "yellow")
                + f"they use the fallback text '{self.fallback}'."
            )
        return texts, spans
