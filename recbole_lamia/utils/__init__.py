from recbole_lamia.utils.registration import (
    patch_config_properties,
    register_dataset,
    register_model,
    registered_models,
)

__all__ = ["patch_config_properties", "register_dataset", "register_model", "registered_models"]
