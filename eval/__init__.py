"""Detection mAP under the ActivityNet protocol (a leaf package: numpy and the standard library only)."""

from .detection import THUMOS_TIOU, GroundTruth, evaluate_detection, evaluate_files, load_ground_truth, scored_subset

__all__ = ["THUMOS_TIOU", "GroundTruth", "evaluate_detection", "evaluate_files", "load_ground_truth", "scored_subset"]
