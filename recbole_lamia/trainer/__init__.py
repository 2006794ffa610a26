from recbole_lamia.trainer.resume import ResumePoints, resume_file
from recbole_lamia.trainer.trainer import TextKNNTrainer

__all__ = ["ResumePoints", "TextKNNTrainer", "resume_file"]
