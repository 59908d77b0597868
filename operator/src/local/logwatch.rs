//! The children's logs go to files (one per process), so the live table
//! stays readable; this counts the warnings and errors in them as they are
//! written, for the table's `warn/err` column.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Warn,
    Error,
}

/// The level of one log line, in the text format (`<time>  WARN message`) or
/// JSON (`"level":"WARN"`); `None` for every other level and for lines that
/// are not log lines.
pub fn level_of(line: &str) -> Option<Level> {
    let level = if line.starts_with('{') {
        let rest = &line[line.find("\"level\":\"")? + 9..];
        &rest[..rest.find('"')?]
    } else {
        line.split_whitespace().nth(1)?
    };
    match level {
        "WARN" => Some(Level::Warn),
        "ERROR" => Some(Level::Error),
        _ => None,
    }
}

/// Running counts over every `*.log` file in a directory.
pub struct LogWatch {
    dir: PathBuf,
    /// Bytes already counted per file, and a partial last line.
    read: HashMap<PathBuf, (u64, String)>,
    pub warnings: u64,
    pub errors: u64,
}

impl LogWatch {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            read: HashMap::new(),
            warnings: 0,
            errors: 0,
        }
    }

    /// Count the lines written since the last scan. Unreadable files are
    /// skipped: the counts are a summary, the files stay the record.
    pub fn scan(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let (offset, partial) = self.read.entry(path.clone()).or_default();
            let Ok(mut file) = std::fs::File::open(&path) else {
                continue;
            };
            if file.seek(SeekFrom::Start(*offset)).is_err() {
                continue;
            }
            let mut bytes = Vec::new();
            let Ok(n) = file.read_to_end(&mut bytes) else {
                continue;
            };
            *offset += n as u64;
            partial.push_str(&String::from_utf8_lossy(&bytes));
            let complete = partial.rfind('\n').map_or(0, |i| i + 1);
            for line in partial[..complete].lines() {
                match level_of(line) {
                    Some(Level::Warn) => self.warnings += 1,
                    Some(Level::Error) => self.errors += 1,
                    None => {}
                }
            }
            partial.drain(..complete);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn levels_are_read_from_text_and_json_lines() {
        let cases = [
            (
                "2026-12-02T10:00:00.123Z  WARN stored offset is beyond the end",
                Some(Level::Warn),
            ),
            ("2026-12-02T10:00:00.123Z ERROR batch failed", Some(Level::Error)),
            ("2026-12-02T10:00:00.123Z  INFO worker starting", None),
            (
                r#"{"timestamp":"x","level":"ERROR","message":"m"}"#,
                Some(Level::Error),
            ),
            (
                r#"{"timestamp":"x","level":"INFO","message":"WARN in text"}"#,
                None,
            ),
            ("thread 'main' panicked", None),
            ("", None),
        ];
        for (line, level) in cases {
            assert_eq!(level_of(line), level, "{line}");
        }
    }

    #[test]
    fn counts_only_new_complete_lines_of_every_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = std::fs::File::create(dir.path().join("worker-0.log")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "t ERROR not a log file\n").unwrap();
        let mut watch = LogWatch::new(dir.path());
        writeln!(a, "t  WARN one\nt  INFO two\nt ERROR thr").unwrap();
        write!(a, "t  WARN half").unwrap();
        watch.scan();
        assert_eq!((watch.warnings, watch.errors), (1, 1));
        writeln!(a, " a line, now complete").unwrap();
        watch.scan();
        watch.scan();
        assert_eq!(
            (watch.warnings, watch.errors),
            (2, 1),
            "counted once, when complete"
        );
    }
}
