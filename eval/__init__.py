"""Detection mAP under the ActivityNet protocol (a leaf package: numpy and the standard library only)."""

from .detection import (IGNORED_LABELS, THUMOS_TIOU, GroundTruth, evaluate_detection, evaluate_files, ignored_note,
                        load_ground_truth, scored_subset)

__all__ = ["IGNORED_LABELS", "THUMOS_TIOU", "GroundTruth", "evaluate_detection", "evaluate_files", "ignored_note",
           "load_ground_truth", "scored_subset"]
