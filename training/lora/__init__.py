"""LoRA fine-tuning: config (presets), trainer (the loop), job (the ``lora`` job kind)."""
