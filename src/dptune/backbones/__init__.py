"""Backbones: a frozen seq2seq (T5) or encoder-only (BERT) model with a soft prompt.

Import from the submodules (`loader.build_backbone`, `seq2seq`, `encoder`); this package stays
import-light so that `dptune.backbones.base` does not pull in transformers and PEFT.
"""
