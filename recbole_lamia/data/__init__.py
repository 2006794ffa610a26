from recbole_lamia.data.dataset import LAMIADataset, SemanticIDDataset
from recbole_lamia.data.item_text import ItemTextBuilder

__all__ = ["LAMIADataset", "SemanticIDDataset", "ItemTextBuilder"]
