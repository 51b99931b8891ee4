//! A log writer for tests: everything written, shared.

/// Everything written, shared with the subscriber's writer.
#[derive(Clone, Default)]
pub(crate) struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// The lines written, timestamps cut out (the rest must match exactly).
    pub(crate) fn lines(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        let stamp = |line: &str| {
            let cut = line.find("Z ").map_or(0, |end| end + 1);
            let line = &line[cut..];
            match line.find(r#""timestamp":""#) {
                Some(start) => {
                    let end = line[start + 13..].find('"').unwrap() + start + 14;
                    format!("{}{}", &line[..start], &line[end..])
                }
                None => line.to_owned(),
            }
        };
        text.lines().map(stamp).collect()
    }
}
