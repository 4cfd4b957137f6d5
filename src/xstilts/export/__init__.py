"""What leaves a run: a fine-tuned target as a Hugging Face model folder (`model`) and predictions in
XTREME's submission layout (`submission`)."""
