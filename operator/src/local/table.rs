//! The live table the local runtime prints every few seconds.

use std::time::Duration;

pub struct Row<'a> {
    pub elapsed: Duration,
    pub stage: Option<usize>,
    pub target_rate: f64,
    pub achieved_rate: Option<f64>,
    pub generators: (usize, usize),
    pub workers: (usize, usize),
    pub lag: u64,
    pub loaded: u64,
    /// Messages produced since the start, and what the load profile asked
    /// for by now (`None` without a profile).
    pub produced: (u64, Option<u64>),
    pub dead_letters: Option<i64>,
    /// Warning and error lines in the children's logs so far.
    pub problems: (u64, u64),
    pub why: &'a str,
}

pub fn header() -> String {
    format!(
        "{:>6}  {:>5}  {:>15}  {:>5}  {:>7}  {:>9}  {:>10}  {:>19}  {:>5}  {:>8}  {}",
        "time",
        "stage",
        "rate tgt/actual",
        "gens",
        "workers",
        "lag",
        "loaded",
        "produced/due",
        "dead",
        "warn/err",
        "why"
    )
}

pub fn row(r: &Row<'_>) -> String {
    let secs = r.elapsed.as_secs();
    let rate = format!(
        "{:.0}/{}",
        r.target_rate,
        r.achieved_rate.map_or("-".to_string(), |a| format!("{a:.0}"))
    );
    format!(
        "{:>3}:{:02}  {:>5}  {:>15}  {:>5}  {:>7}  {:>9}  {:>10}  {:>19}  {:>5}  {:>8}  {}",
        secs / 60,
        secs % 60,
        r.stage.map_or("-".to_string(), |s| (s + 1).to_string()),
        rate,
        format!("{}/{}", r.generators.0, r.generators.1),
        format!("{}/{}", r.workers.0, r.workers.1),
        r.lag,
        r.loaded,
        format!(
            "{}/{}",
            r.produced.0,
            r.produced.1.map_or("-".to_string(), |d| d.to_string())
        ),
        r.dead_letters.map_or("-".to_string(), |d| d.to_string()),
        format!("{}/{}", r.problems.0, r.problems.1),
        r.why
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_lines_up_with_the_header() {
        let r = row(&Row {
            elapsed: Duration::from_secs(75),
            stage: Some(1),
            target_rate: 6000.0,
            achieved_rate: Some(5987.4),
            generators: (2, 2),
            workers: (3, 4),
            lag: 12_345,
            loaded: 450_000,
            produced: (451_200, Some(452_000)),
            dead_letters: Some(12),
            problems: (4, 1),
            why: "scaling up 3 -> 4",
        });
        assert_eq!(r.len() - "scaling up 3 -> 4".len(), header().len() - "why".len());
        for part in [
            "1:15",
            "6000/5987",
            "2/2",
            "3/4",
            "12345",
            "450000",
            "451200/452000",
            "12",
            "4/1",
            "scaling up",
        ] {
            assert!(r.contains(part), "{r} lacks {part}");
        }
    }
}
