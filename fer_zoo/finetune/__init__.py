"""``python -m fer_zoo finetune-frames``: fine-tune a frame encoder on labeled face photos, export an encoder file."""
