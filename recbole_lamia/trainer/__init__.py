from recbole_lamia.trainer.resume import ResumePoints, resume_file

__all__ = ["ResumePoints", "resume_file"]
