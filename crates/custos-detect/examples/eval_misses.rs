//! Prints missed and spurious spans of one kind in a labelled set (tuning aid for dev.jsonl).
#![allow(clippy::unwrap_used, missing_docs)]
use custos_detect::{Detector, DetectorConfig, eval::label_kind};
fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap();
    let label = args.next().unwrap();
    let kind = label_kind(&label).unwrap();
    let det = Detector::new(DetectorConfig::default()).unwrap();
    for line in std::fs::read_to_string(path).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let text = v["text"].as_str().unwrap();
        let cps: Vec<usize> = text
            .char_indices()
            .map(|(b, _)| b)
            .chain([text.len()])
            .collect();
        let found: Vec<_> = det
            .detect(text)
            .into_iter()
            .filter(|f| f.kind == kind)
            .collect();
        let truth: Vec<(usize, usize)> = v["spans"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["label"] == label.as_str())
            .map(|s| {
                (
                    cps[s["start"].as_u64().unwrap() as usize],
                    cps[s["end"].as_u64().unwrap() as usize],
                )
            })
            .collect();
        for &(s, e) in &truth {
            if !found.iter().any(|f| f.start < e && s < f.end) {
                println!("FN {:?}   in {:?}", &text[s..e], text);
            } else if !found.iter().any(|f| f.start == s && f.end == e) {
                let f = found.iter().find(|f| f.start < e && s < f.end).unwrap();
                println!("PART {:?} got {:?}", &text[s..e], &text[f.start..f.end]);
            }
        }
        for f in &found {
            if !truth.iter().any(|&(s, e)| f.start < e && s < f.end) {
                println!("FP {:?}   in {:?}", &text[f.start..f.end], text);
            }
        }
    }
}
