"""RG-VLM labelling: prompts, labellers (two-stage LVLM, reference, CLIP), backends, rewards, label runs."""
