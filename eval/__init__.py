"""Detection mAP under the ActivityNet protocol, the false-positive breakdown and the results page: a leaf
package (numpy, the standard library and the project's utils/ only)."""

from .detection import (IGNORED_LABELS, THUMOS_TIOU, GroundTruth, evaluate_detection, evaluate_files, ignored_note,
                        load_ground_truth, scored_subset)

__all__ = ["IGNORED_LABELS", "THUMOS_TIOU", "GroundTruth", "evaluate_detection", "evaluate_files", "ignored_note",
           "load_ground_truth", "scored_subset"]
