"""recbole-lamia: semantic-ID generative recommendation (LAMIA, TIGER) as a RecBole 1.2.1 plugin.

Importing this package registers the plugin's models, datasets and YAML defaults with RecBole, so
RecBole's own ``get_model``, ``create_dataset`` and ``run_recbole`` see them.
"""

from recbole_lamia.compat import (
    count_dropped_interactions,
    disable_recbole_anomaly_detection,
    patch_recbole_checkpoint_loading,
    patch_recbole_sampled_eval_collate,
    patch_recbole_saved_data_loading,
    silence_recbole_chained_fillna_warning,
)
from recbole_lamia.data.dataset import LAMIADataset, TextKNNDataset, TIGERDataset
from recbole_lamia.model.sequential_recommender.bert4rec import BERT4Rec
from recbole_lamia.model.sequential_recommender.lamia import LAMIA
from recbole_lamia.model.sequential_recommender.textknn import TextKNN
from recbole_lamia.model.sequential_recommender.tiger import TIGER
from recbole_lamia.trainer.trainer import TextKNNTrainer
from recbole_lamia.utils.distributed import patch_recbole_cpu_distributed
from recbole_lamia.utils.registration import (
    patch_config_properties,
    register_dataset,
    register_model,
    register_trainer,
    registered_models,
)

__version__ = "0.1.0"

patch_recbole_checkpoint_loading()
patch_recbole_saved_data_loading()
patch_recbole_sampled_eval_collate()
count_dropped_interactions()
patch_recbole_cpu_distributed()
disable_recbole_anomaly_detection()
silence_recbole_chained_fillna_warning()
patch_config_properties()
register_model(LAMIA)
register_dataset(LAMIADataset, "LAMIA")
register_model(TIGER)
register_dataset(TIGERDataset, "TIGER")
register_model(TextKNN)
register_dataset(TextKNNDataset, "TextKNN")
register_trainer(TextKNNTrainer)
# RecBole's BERT4Rec with the same loss computed on the real masked positions only (model/.../bert4rec.py).
register_model(BERT4Rec)

__all__ = ["BERT4Rec", "LAMIA", "LAMIADataset", "TIGER", "TIGERDataset", "TextKNN", "TextKNNDataset",
           "registered_models", "__version__"]
