from recbole_lamia.model.sequential_recommender.bert4rec import BERT4Rec
from recbole_lamia.model.sequential_recommender.lamia import LAMIA
from recbole_lamia.model.sequential_recommender.textknn import TextKNN
from recbole_lamia.model.sequential_recommender.tiger import TIGER

__all__ = ["BERT4Rec", "LAMIA", "TIGER", "TextKNN"]
