//! Choosing a confidence threshold for a pretrained detector: its detections matched to labelled
//! faces, then the threshold with the best F1.

use vision::Detection;

/// How a threshold does on the labelled images.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    /// Detections whose confidence is above it are kept.
    pub threshold: f32,
    /// Of the kept detections, the share that found a face (1 when none is kept).
    pub precision: f32,
    /// Of the faces, the share found (1 when there are none).
    pub recall: f32,
    /// The harmonic mean of precision and recall (1 when there is nothing to find and nothing is
    /// kept).
    pub f1: f32,
}

/// Each detection's confidence and whether it found one of `faces`: greedily, most confident
/// first, a detection takes the face not yet found that it overlaps most, if by `iou` or more.
/// Since a detection's match depends only on more confident ones, the matches of the detections
/// above any threshold are the same as if only those had been made.
pub fn match_faces(detections: &[Detection], faces: &[Detection], iou: f32) -> Vec<(f32, bool)> {
    let mut detections = detections.to_vec();
    detections.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    let mut found = vec![false; faces.len()];
    detections
        .iter()
        .map(|detection| {
            let best = (0..faces.len())
                .filter(|&i| !found[i])
                .map(|i| (i, detection.iou(&faces[i])))
                .filter(|&(_, overlap)| overlap >= iou)
                .max_by(|a, b| a.1.total_cmp(&b.1));
            if let Some((i, _)) = best {
                found[i] = true;
            }
            (detection.confidence, best.is_some())
        })
        .collect()
}

/// The threshold with the best F1 for the `outcomes` of every image (confidence, found a face: see
/// [`match_faces`]) of detections made above `floor`, with `faces` faces in all; on a tie, the
/// higher threshold. A threshold keeping the `k` most confident detections is halfway between
/// the `k`th confidence (1 for none) and the next (`floor` after the last).
pub fn best_threshold(mut outcomes: Vec<(f32, bool)>, faces: usize, floor: f32) -> Score {
    outcomes.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best: Option<Score> = None;
    let mut found = 0;
    for kept in 0..=outcomes.len() {
        if kept > 0 && outcomes[kept - 1].1 {
            found += 1;
        }
        let above = if kept == 0 { 1.0 } else { outcomes[kept - 1].0 };
        let below = outcomes.get(kept).map_or(floor, |o| o.0);
        if below == above && kept < outcomes.len() {
            continue; // no threshold separates equal confidences
        }
        let ratio = |part: usize, whole: usize| if whole == 0 { 1.0 } else { part as f32 / whole as f32 };
        let score = Score {
            threshold: (above + below) / 2.0,
            precision: ratio(found, kept),
            recall: ratio(found, faces),
            // 2·TP / (2·TP + FP + FN) = 2·TP / (kept + faces)
            f1: ratio(2 * found, kept + faces),
        };
        if best.is_none_or(|b| score.f1 > b.f1) {
            best = Some(score);
        }
    }
    best.expect("keeping no detection is always a candidate")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(left: f32, top: f32, right: f32, bottom: f32, confidence: f32) -> Detection {
        Detection { left, top, right, bottom, confidence }
    }

    #[test]
    fn detections_find_faces_greedily_by_confidence() {
        let faces = [boxed(0.0, 0.0, 10.0, 10.0, 1.0), boxed(20.0, 0.0, 30.0, 10.0, 1.0)];
        let detections = [
            boxed(1.0, 0.0, 11.0, 10.0, 0.6),  // IoU 0.82 with the first face, which the 0.9 took
            boxed(0.0, 0.0, 10.0, 10.0, 0.9),  // the first face exactly
            boxed(20.0, 0.0, 26.0, 10.0, 0.7), // IoU 0.6 with the second face
            boxed(50.0, 0.0, 60.0, 10.0, 0.8), // nowhere
        ];
        assert_eq!(match_faces(&detections, &faces, 0.5), [(0.9, true), (0.8, false), (0.7, true), (0.6, false)]);
        assert_eq!(match_faces(&detections, &faces, 0.7), [(0.9, true), (0.8, false), (0.7, false), (0.6, false)]);
        assert!(match_faces(&[], &faces, 0.5).is_empty());
    }

    /// Asserts that the scores agree to within 1e-6.
    #[track_caller]
    fn assert_score(actual: Score, [threshold, precision, recall, f1]: [f32; 4]) {
        let fields = [actual.threshold, actual.precision, actual.recall, actual.f1];
        let near = fields.iter().zip([threshold, precision, recall, f1]).all(|(a, e)| (a - e).abs() < 1e-6);
        assert!(near, "{actual:?} is not {:?}", [threshold, precision, recall, f1]);
    }

    #[test]
    fn the_threshold_with_the_best_f1_wins() {
        // Two faces; detections 0.9 (face), 0.8 (not), 0.7 (face), 0.3 (not). Keeping 0.9, 0.8 and
        // 0.7: precision 2/3, recall 1, F1 0.8 (0.9 alone: 2/3; all four: 2/3).
        let best = best_threshold(vec![(0.3, false), (0.9, true), (0.7, true), (0.8, false)], 2, 0.05);
        assert_score(best, [0.5, 2.0 / 3.0, 1.0, 0.8]);
    }

    #[test]
    fn ties_take_the_higher_threshold() {
        // One face found at 0.9, a false detection at 0.2 (in another image): keeping only the face
        // is perfect, as is any threshold from 0.2 to 0.9; the midpoint is taken.
        assert_score(best_threshold(vec![(0.2, false), (0.9, true)], 1, 0.05), [0.55, 1.0, 1.0, 1.0]);
        // F1 2/3 both keeping 0.9 alone (one face of two) and keeping all four.
        let best = best_threshold(vec![(0.9, true), (0.8, false), (0.7, false), (0.6, true)], 2, 0.05);
        assert_score(best, [0.85, 1.0, 0.5, 2.0 / 3.0]);
    }

    #[test]
    fn no_faces_and_no_detections_is_perfect() {
        assert_score(best_threshold(Vec::new(), 0, 0.05), [0.525, 1.0, 1.0, 1.0]);
        // Only a false detection: keep none.
        assert_score(best_threshold(vec![(0.4, false)], 0, 0.05), [0.7, 1.0, 1.0, 1.0]);
        // A face never detected: F1 0 whatever the threshold; the highest is kept.
        assert_score(best_threshold(vec![(0.4, false)], 1, 0.05), [0.7, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn equal_confidences_are_kept_or_dropped_together() {
        // Keeping one of the two is impossible: both (F1 2/3) beat none (F1 0).
        assert_score(best_threshold(vec![(0.6, true), (0.6, false)], 1, 0.05), [0.325, 0.5, 1.0, 2.0 / 3.0]);
    }
}
