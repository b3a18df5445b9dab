"""One small, valid official record per task (shaped like the shared SuperGLUE files)."""

from __future__ import annotations

RECORDS: dict[str, dict] = {
    "boolq": {"question": "is it wet", "passage": "It rained all day.", "idx": 0, "label": True},
    "cb": {"premise": "It rained.", "hypothesis": "It was wet.", "label": "entailment", "idx": 0},
    "copa": {
        "premise": "The man turned on the faucet.",
        "choice1": "The toilet filled with water.",
        "choice2": "Water flowed from the spout.",
        "question": "effect",
        "label": 1,
        "idx": 0,
    },
    "multirc": {
        "idx": 0,
        "version": 1.1,
        "passage": {
            "text": "Sent 1: <b>Force</b> moves things.<br>",
            "questions": [
                {
                    "question": "What moves things?",
                    "idx": 0,
                    "answers": [
                        {"text": "Force", "idx": 0, "label": 1},
                        {"text": "Nothing", "idx": 1, "label": 0},
                    ],
                }
            ],
        },
    },
    "record": {
        "source": "Daily mail",
        "passage": {
            "text": "Tracy Morgan will host SNL.\n@highlight\nMorgan returns",
            "entities": [{"start": 0, "end": 11}, {"start": 23, "end": 25}],
        },
        "qas": [
            {
                "query": "@placeholder will host the show",
                "answers": [{"start": 0, "end": 11, "text": "Tracy Morgan"}],
                "idx": 0,
            }
        ],
        "idx": 0,
    },
    "rte": {
        "premise": "Dogs bark.",
        "hypothesis": "Dogs are loud.",
        "label": "entailment",
        "idx": 0,
    },
    "wic": {
        "word": "class",
        "sentence1": "An emerging professional class.",
        "sentence2": "It showed real class.",
        "idx": 0,
        "label": False,
        "start1": 25,
        "start2": 15,
        "end1": 30,
        "end2": 20,
    },
    "wsc": {
        "text": "Mark told Pete many lies about himself .",
        "target": {
            "span2_index": 5,
            "span1_index": 0,
            "span1_text": "Mark",
            "span2_text": "himself",
        },
        "idx": 0,
        "label": True,
    },
}
