//! Printing results: text for people, one JSON object per line with `--json`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::exit;

/// Where results go.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// Text, or JSON with `json`.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    /// Whether results are JSON.
    pub fn is_json(&self) -> bool {
        self.json
    }

    /// Prints a result: `value` as one JSON line, or `text` (already formatted).
    ///
    /// Write errors are ignored on purpose here and below: stdout closed by the reader
    /// (`rm deals | head`) must not turn a done command into a failed one.
    pub fn result(&self, value: &Value, text: &str) {
        let mut stdout = std::io::stdout().lock();
        let _ = if self.json {
            writeln!(stdout, "{value}")
        } else {
            write!(stdout, "{text}")
        };
        let _ = stdout.flush();
    }

    /// Prints an event line (JSON only; text mode shows progress otherwise).
    pub fn event(&self, value: &Value) {
        if self.json {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "{value}");
            let _ = stdout.flush();
        }
    }

    /// A progress bar on stderr with `total` steps (a spinner when `None`), drawn only
    /// on a terminal and never with `--json`.
    pub fn progress(&self, total: Option<u64>) -> ProgressBar {
        if self.json || !std::io::stderr().is_terminal() {
            return ProgressBar::hidden();
        }
        let bar = match total {
            Some(n) => {
                let bar = ProgressBar::new(n);
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {msg}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                bar
            }
            None => {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar
            }
        };
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        bar
    }

    /// Prints an error — one sentence, then its causes — and returns exit code 1.
    pub fn fail(&self, error: &anyhow::Error) -> ExitCode {
        let causes: Vec<String> = error.chain().skip(1).map(|c| c.to_string()).collect();
        if self.json {
            let v = json!({"error": error.to_string(), "causes": causes, "exit_code": exit::ERROR});
            let _ = writeln!(std::io::stdout().lock(), "{v}");
        } else {
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {error}");
            for c in &causes {
                let _ = writeln!(stderr, "  caused by: {c}");
            }
        }
        exit::code(exit::ERROR)
    }
}

/// Prints a command line that did not parse — with `json`, as
/// `{"error":…,"usage":…,"exit_code":2}` on stdout — and returns its exit code: 2, or 0
/// for `--help` and `--version`, which clap reports the same way and which print as they
/// are.
pub fn usage_error(error: &clap::Error, json: bool) -> ExitCode {
    use clap::error::ErrorKind;
    let code = error.exit_code();
    let informational = matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    );
    if !json || informational {
        let _ = error.print();
        return exit::code(u8::try_from(code).unwrap_or(exit::USAGE));
    }
    let rendered = error.render().to_string();
    // clap's text: "error: <sentence>\n\n<detail>\n\nUsage: …\n\nFor more information, …"
    let sentence = rendered
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned();
    let usage = rendered
        .lines()
        .find_map(|l| l.strip_prefix("Usage: "))
        .unwrap_or_default()
        .to_owned();
    let v = json!({"error": sentence, "usage": usage, "causes": [], "exit_code": exit::USAGE});
    let _ = writeln!(std::io::stdout().lock(), "{v}");
    exit::code(exit::USAGE)
}

/// An error of the node as an [`anyhow::Error`] whose chain holds every cause, also the
/// causes a server sent over the control socket.
pub fn node_error(error: rm_node::Error) -> anyhow::Error {
    if let rm_node::Error::Control(c) = &error
        && let rm_node::ControlError::Server(reply) = c.as_ref()
    {
        let mut chain = reply.causes.iter().rev();
        let mut e = match chain.next() {
            Some(last) => anyhow::anyhow!("{last}"),
            None => return anyhow::anyhow!("{}", reply.message),
        };
        for cause in chain {
            e = e.context(cause.clone());
        }
        return e.context(reply.message.clone());
    }
    anyhow::Error::new(error)
}

/// A table as text: a header row, then rows, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            s.push_str(cell);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(pad));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `n` bytes for people: `19,958 B`, `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{} B", thousands(n));
    }
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// The last 8 characters of a peer id, for tables and log lines.
pub fn short_peer(peer: &str) -> &str {
    peer.get(peer.len().saturating_sub(8)..).unwrap_or(peer)
}

/// `n word`/`n words`, with thousands separators: `1 block`, `1,024 blocks`.
pub fn count(n: u64, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{} {word}s", thousands(n))
    }
}

/// `19958000` → `19,958,000`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(19_958_000), "19,958,000");
        assert_eq!(thousands(7), "7");
        assert_eq!(count(1, "block"), "1 block");
        assert_eq!(count(1024, "block"), "1,024 blocks");
        assert_eq!(bytes(410), "410 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(256 << 20), "256.0 MiB");
        let t = table(&["a", "bb"], &[vec!["xxx".into(), "y".into()]]);
        assert_eq!(t, "a    bb\nxxx  y\n");
    }
}
