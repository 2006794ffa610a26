from recbole_lamia.model.sequential_recommender.lamia import LAMIA
from recbole_lamia.model.sequential_recommender.tiger import TIGER

__all__ = ["LAMIA", "TIGER"]
