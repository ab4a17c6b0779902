//! Content-defined chunking (FastCDC 2020) of files through one reused buffer.
//!
//! fastcdc's own `StreamCDC` allocates a window per file, copies every chunk out of it byte by
//! byte and moves the rest of the window down after each chunk; this keeps one window of two
//! maximum chunks for a whole backup and hands out chunks as slices of it. The cut points are
//! the same as `StreamCDC`'s (the same cut function over a window of at least `max` bytes, or
//! the file's tail), so data backed up before this chunker existed is still deduplicated.

use std::io::Read;
use std::path::Path;

use fastcdc::v2020::FastCDC;

use crate::error::Error;

pub struct Chunker {
    window: Vec<u8>,
    min: u32,
    avg: u32,
    max: u32,
}

impl Chunker {
    /// Chunks of `min` to `max` bytes, `avg` on average (fastcdc's bounds apply).
    pub fn new(min: u32, avg: u32, max: u32) -> Chunker {
        Chunker {
            // Two maximum chunks: a whole `max` is always in hand before a cut, with room to
            // read a large block behind it.
            window: vec![0; 2 * max as usize],
            min,
            avg,
            max,
        }
    }

    /// Cut what `source` reads (the file at `path`, named in errors) into chunks, handing
    /// each to `each` in order. Stops at the first error, `each`'s included.
    pub fn chunks<R: Read>(
        &mut self,
        mut source: R,
        path: &Path,
        mut each: impl FnMut(&[u8]) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let max = self.max as usize;
        let (mut start, mut end, mut eof) = (0usize, 0usize, false);
        loop {
            while !eof && end < self.window.len() {
                match source.read(&mut self.window[end..]) {
                    Ok(0) => eof = true,
                    Ok(n) => end += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Error::Unreadable(format!("{}: {e}", path.display()))),
                }
            }
            while end - start >= max || (eof && start < end) {
                let data = &self.window[start..end];
                let (_, cut) = FastCDC::new(data, self.min, self.avg, self.max).cut(0, data.len());
                // The cut function ends a chunk within `max` and within the data, and takes at
                // least one byte of data that is not empty.
                assert!(cut > 0 && cut <= data.len().min(max), "fastcdc cut {cut}");
                each(&data[..cut])?;
                start += cut;
            }
            if eof {
                return Ok(());
            }
            self.window.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same chunks as fastcdc's `StreamCDC`, which earlier backups were cut with, for
    /// empty, tiny, exact-window and large inputs, read in whole or in dribbles.
    #[test]
    fn cuts_where_stream_cdc_cuts() {
        let (min, avg, max) = (4096, 16384, 65536);
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let random: Vec<u8> = (0..1_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                // Runs of repeated bytes too, so some chunks end at `max`.
                if state.is_multiple_of(7) {
                    0
                } else {
                    (state >> 24) as u8
                }
            })
            .collect();
        let mut zeros = vec![0u8; 300_000];
        zeros.extend_from_slice(&random[..100_000]);
        let mut chunker = Chunker::new(min, avg, max);
        for input in [
            &[][..],
            &random[..10],
            &random[..max as usize],
            &random[..2 * max as usize + 1],
            &zeros[..],
            &random[..],
        ] {
            let expected: Vec<Vec<u8>> = fastcdc::v2020::StreamCDC::new(input, min, avg, max)
                .map(|c| c.expect("in memory").data)
                .collect();
            for dribble in [false, true] {
                let mut got = Vec::new();
                let source: Box<dyn Read> = if dribble {
                    Box::new(Dribble(input))
                } else {
                    Box::new(input)
                };
                chunker
                    .chunks(source, Path::new("test"), |c| {
                        got.push(c.to_vec());
                        Ok(())
                    })
                    .expect("chunks");
                assert_eq!(got, expected, "{} bytes, dribble {dribble}", input.len());
            }
        }
    }

    /// A reader that answers at most 1000 bytes a call.
    struct Dribble<'a>(&'a [u8]);

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = buf.len().min(1000).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
}
