import torch

from dptune.training.data import (
    Collator,
    Feature,
    epoch_batches,
    eval_batches,
    group_factor_for,
    steps_per_epoch,
)


def test_epoch_batches_cover_every_feature_once_and_repeat_for_same_seed():
    lengths = [((i * 37) % 23) + 1 for i in range(103)]
    first = epoch_batches(lengths, batch_size=8, seed=3, epoch=1)
    again = epoch_batches(lengths, batch_size=8, seed=3, epoch=1)
    assert first == again
    assert sorted(i for b in first for i in b) == list(range(103))
    assert first != epoch_batches(lengths, batch_size=8, seed=3, epoch=2)
    assert first != epoch_batches(lengths, batch_size=8, seed=4, epoch=1)


def test_length_grouping_reduces_padding():
    lengths = [1 + (i * 7919) % 200 for i in range(512)]
    grouped = epoch_batches(lengths, batch_size=16, seed=0, epoch=0)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in grouped)
    naive = [list(range(i, min(i + 16, 512))) for i in range(0, 512, 16)]
    naive_padded = sum(len(b) * max(lengths[i] for i in b) for b in naive)
    assert padded < 0.75 * naive_padded


def test_eval_batches_sorted_by_length():
    batches = eval_batches([3, 9, 1, 5], batch_size=2)
    assert batches == [[1, 3], [0, 2]]
    assert steps_per_epoch(17, 8) == 3


def test_eval_batches_fill_the_longest_batchs_token_budget():
    lengths = [100] + [10] * 50 + [30] * 6
    batches = eval_batches(lengths, batch_size=4)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    padded = [len(b) * max(lengths[i] for i in b) for b in batches]
    assert max(padded) <= 4 * 100 == padded[0]
    assert [len(b) for b in batches] == [4, 13, 32, 8]  # 400 tokens: 100 + 3 x 30, 13 x 30 or 10
    assert len(batches) < len(lengths) / 4  # fixed batches of 4 would be 15
    short = eval_batches([100, 100] + [1] * 100, batch_size=2)
    assert [len(b) for b in short] == [2] + [16] * 6 + [4]  # 200 tokens, but at most 16 rows


def test_collator_pads_sources_targets_and_candidates():
    feats = [
        Feature([5, 6, 7], [8, 1], 0, [[8, 1], [9, 1]], 0),
        Feature([5], [9, 4, 1], -1, [[8, 1], [9, 4, 1], [3, 1]], 1),
    ]
    batch = Collator(pad_id=0)(feats)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["labels"].tolist() == [[8, 1, -100], [9, 4, 1]]
    assert batch["label_index"].tolist() == [0, -1]
    assert batch["cand_ids"].shape == (2, 3, 3)
    assert batch["cand_valid"].tolist() == [[True, True, False], [True, True, True]]
    assert batch["cand_mask"][1, 1].tolist() == [1, 1, 1]
    assert batch["cand_ids"].dtype == torch.long


def test_answers_that_fill_max_target_length_are_warned_about(tiny_t5_dir, superglue_dir, capsys):
    from transformers import AutoTokenizer

    from dptune.tasks.registry import get_task
    from dptune.training.data import build_train_features

    task = get_task("copa", "natural")  # targets and candidates are whole sentences
    examples = task.read(str(superglue_dir), "val")[:20]
    tokenizer = AutoTokenizer.from_pretrained(tiny_t5_dir)

    build_train_features(task, examples, tokenizer, 64, 128)
    assert "max_target_length" not in capsys.readouterr().err

    build_train_features(task, examples, tokenizer, 64, 3)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("warning: max_target_length: ") and "training targets" in lines[0]
    assert "distinct candidate answers fill its 3 tokens" in lines[1]
    assert lines[1].endswith("raise --max-target-length")


def test_a_small_sets_batches_change_content_between_epochs():
    # CB at batch 8: 250 features, fewer than one mega-batch of 50 batches. Sorted whole, every
    # epoch would hold the same batches, only reordered.
    lengths = [20 + (i * 7919) % 180 for i in range(250)]
    contents = [
        {frozenset(b) for b in epoch_batches(lengths, batch_size=8, seed=0, epoch=e)}
        for e in range(3)
    ]
    assert len(contents[0] & contents[1]) < len(contents[0]) // 2
    assert len(contents[1] & contents[2]) < len(contents[1]) // 2
    assert epoch_batches(lengths, 8, 0, 0) == epoch_batches(lengths, 8, 0, 0, group_factor=7)
    whole = [
        {frozenset(b) for b in epoch_batches(lengths, 8, 0, e, group_factor=50)} for e in (0, 1)
    ]
    assert len(whole[0] & whole[1]) > len(whole[0]) // 2  # what the cap is for


def test_group_factor_caps_at_fifty_and_never_drops_below_one():
    assert group_factor_for(250, 8) == 7
    assert group_factor_for(100_000, 8) == 50
    assert group_factor_for(10, 8) == 1
