"""Contrastive training and fine-tuning as a resumable, observable, cancellable job."""
