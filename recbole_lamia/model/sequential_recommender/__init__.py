from recbole_lamia.model.sequential_recommender.lamia import LAMIA

__all__ = ["LAMIA"]
