"""Builders of small evaluator inputs shared by the evaluator tests."""


def make_gt(videos: dict, subset: str = "test") -> dict:
    """gt.json dict from {vid: [(label, start, end), ...]}."""
    return {
        "database": {
            vid: {"subset": subset, "annotations": [{"label": l, "segment": [s, e]} for l, s, e in anns]}
            for vid, anns in videos.items()
        }
    }


def make_results(videos: dict) -> dict:
    """ActivityNet result dict from {vid: [(label, score, start, end), ...]}."""
    return {
        "version": "test",
        "results": {
            vid: [{"label": l, "score": sc, "segment": [s, e]} for l, sc, s, e in preds]
            for vid, preds in videos.items()
        },
        "external_data": {},
    }
