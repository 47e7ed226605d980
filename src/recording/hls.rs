//! HLS over the recording itself: a version-7 playlist whose media segments are byte ranges of
//! the fragmented MP4 (`EXT-X-MAP` for `ftyp`+`moov`, one segment per video fragment with the
//! audio fragment that precedes it). No second copy of the media is stored; the playlist is
//! written beside the recording when it is delivered, and links to it are rewritten with a
//! fresh presigned URL of the recording when asked for.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use super::RecordingError;

/// Where the init section ends and where each media segment lies, with its duration.
#[derive(Debug, Clone, PartialEq)]
pub struct Index {
    pub init_len: u64,
    pub segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub offset: u64,
    pub len: u64,
    pub seconds: f64,
}

/// What the playlist names the recording by; rewritten on the way out.
pub const MEDIA_PLACEHOLDER: &str = "recording.mp4";

#[derive(Debug)]
struct Track {
    id: u32,
    timescale: u32,
    video: bool,
    default_duration: u32,
}

fn bad(path: &Path, message: impl Into<String>) -> RecordingError {
    RecordingError::Metadata {
        path: path.to_path_buf(),
        message: format!("HLS index: {}", message.into()),
    }
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Child boxes of a box payload: (kind, payload).
fn children(payload: &[u8]) -> Vec<([u8; 4], &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= payload.len() {
        let size = be32(payload, at).unwrap_or(0) as usize;
        let kind: [u8; 4] = payload[at + 4..at + 8].try_into().unwrap_or_default();
        if size < 8 || at + size > payload.len() {
            break;
        }
        out.push((kind, &payload[at + 8..at + size]));
        at += size;
    }
    out
}

fn child<'a>(payload: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    children(payload)
        .into_iter()
        .find(|(k, _)| k == kind)
        .map(|(_, p)| p)
}

fn tracks(moov: &[u8]) -> Vec<Track> {
    let mut tracks: Vec<Track> = children(moov)
        .into_iter()
        .filter(|(k, _)| k == b"trak")
        .filter_map(|(_, trak)| {
            let tkhd = child(trak, b"tkhd")?;
            // Version 1 has 64-bit times before the track id.
            let id = be32(tkhd, if tkhd.first() == Some(&1) { 20 } else { 12 })?;
            let mdia = child(trak, b"mdia")?;
            let mdhd = child(mdia, b"mdhd")?;
            let timescale = be32(mdhd, if mdhd.first() == Some(&1) { 20 } else { 12 })?;
            let hdlr = child(mdia, b"hdlr")?;
            let video = hdlr.get(8..12) == Some(b"vide");
            Some(Track {
                id,
                timescale,
                video,
                default_duration: 0,
            })
        })
        .collect();
    if let Some(mvex) = child(moov, b"mvex") {
        for (_, trex) in children(mvex).into_iter().filter(|(k, _)| k == b"trex") {
            let (Some(id), Some(duration)) = (be32(trex, 4), be32(trex, 12)) else {
                continue;
            };
            if let Some(t) = tracks.iter_mut().find(|t| t.id == id) {
                t.default_duration = duration;
            }
        }
    }
    tracks
}

/// A `moof`'s first track fragment, in its track's timescale.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Timing {
    track: u32,
    /// Decode time of its first sample (`tfdt`).
    start: u64,
    duration: u64,
}

fn fragment_timing(moof: &[u8], tracks: &[Track]) -> Option<Timing> {
    let traf = child(moof, b"traf")?;
    let tfdt = child(traf, b"tfdt")?;
    let start = if tfdt.first() == Some(&1) {
        u64::from_be_bytes(tfdt.get(4..12)?.try_into().ok()?)
    } else {
        be32(tfdt, 4)? as u64
    };
    let tfhd = child(traf, b"tfhd")?;
    let flags = be32(tfhd, 0)? & 0xff_ffff;
    let id = be32(tfhd, 4)?;
    let mut at = 8;
    if flags & 0x01 != 0 {
        at += 8; // base data offset
    }
    if flags & 0x02 != 0 {
        at += 4; // sample description index
    }
    let default = if flags & 0x08 != 0 {
        be32(tfhd, at)?
    } else {
        tracks.iter().find(|t| t.id == id)?.default_duration
    };
    let mut total = 0u64;
    for (_, trun) in children(traf).into_iter().filter(|(k, _)| k == b"trun") {
        let flags = be32(trun, 0)? & 0xff_ffff;
        let count = be32(trun, 4)? as usize;
        let mut at = 8;
        if flags & 0x001 != 0 {
            at += 4;
        }
        if flags & 0x004 != 0 {
            at += 4;
        }
        let fields = [0x100, 0x200, 0x400, 0x800]
            .iter()
            .filter(|&&f| flags & f != 0)
            .count();
        for i in 0..count {
            total += if flags & 0x100 != 0 {
                be32(trun, at + i * fields * 4)? as u64
            } else {
                default as u64
            };
        }
    }
    Some(Timing {
        track: id,
        start,
        duration: total,
    })
}

/// Reads box headers (and the small `moov`/`moof` boxes) of the first `len` bytes of `path`.
pub fn index_file(path: &Path, len: u64) -> Result<Index, RecordingError> {
    let io = |e: std::io::Error| bad(path, e.to_string());
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut read_box = |offset: u64, size: usize| -> Result<Vec<u8>, RecordingError> {
        let mut buf = vec![0u8; size];
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        file.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    };
    let mut tracks = Vec::new();
    let mut init_len = None;
    // Fragments as (offset, end, timing); grouped into segments below.
    let mut fragments: Vec<(u64, u64, Timing)> = Vec::new();
    let mut offset = 0u64;
    while offset + 8 <= len {
        let header = read_box(offset, 16.min((len - offset) as usize))?;
        let mut size = be32(&header, 0).unwrap_or(0) as u64;
        let kind: [u8; 4] = header[4..8].try_into().unwrap_or_default();
        let mut header_len = 8;
        if size == 1 {
            size = header
                .get(8..16)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            header_len = 16;
        }
        if size < header_len || offset + size > len {
            break; // a box cut short: the end of what is complete
        }
        match &kind {
            b"moov" | b"moof" if size > 64 << 20 => {
                return Err(bad(path, "metadata box larger than 64 MiB"));
            }
            b"moov" => {
                let body = read_box(offset + header_len, (size - header_len) as usize)?;
                tracks = self::tracks(&body);
                init_len = Some(offset + size);
            }
            b"moof" => {
                let body = read_box(offset + header_len, (size - header_len) as usize)?;
                let timing = fragment_timing(&body, &tracks)
                    .ok_or_else(|| bad(path, format!("unreadable moof at {offset}")))?;
                fragments.push((offset, offset + size, timing));
            }
            b"mdat" => {
                if let Some(last) = fragments.last_mut() {
                    last.1 = offset + size;
                }
            }
            _ => {}
        }
        offset += size;
    }
    let init_len = init_len.ok_or_else(|| bad(path, "no complete moov"))?;
    Ok(Index {
        init_len,
        segments: segments(&fragments, &tracks),
    })
}

/// One segment per video fragment, starting with the fragments before it that are not video
/// (the audio that goes with it). Players check a segment's time against the decode time of
/// its first fragment, so a segment lasts from that time to the next segment's.
fn segments(fragments: &[(u64, u64, Timing)], tracks: &[Track]) -> Vec<Segment> {
    let seconds = |track: u32, ticks: u64| {
        tracks
            .iter()
            .find(|t| t.id == track)
            .filter(|t| t.timescale > 0)
            .map_or(0.0, |t| ticks as f64 / t.timescale as f64)
    };
    let is_video = |track: u32| tracks.iter().any(|t| t.id == track && t.video);
    let has_video = fragments.iter().any(|f| is_video(f.2.track));
    // (offset, end, start s, end s) per segment.
    let mut spans: Vec<(u64, u64, f64, f64)> = Vec::new();
    let mut open: Option<(u64, f64)> = None;
    for &(offset, end, t) in fragments {
        let (begin, start) = *open.get_or_insert((offset, seconds(t.track, t.start)));
        if !has_video || is_video(t.track) {
            spans.push((begin, end, start, seconds(t.track, t.start + t.duration)));
            open = None;
        }
    }
    // Trailing audio after the last video fragment joins the last segment.
    if let (Some(_), Some(last)) = (open, spans.last_mut()) {
        last.1 = fragments.last().map_or(last.1, |f| f.1);
    }
    let next_starts: Vec<Option<f64>> = spans
        .iter()
        .skip(1)
        .map(|s| Some(s.2))
        .chain([None])
        .collect();
    spans
        .iter()
        .zip(next_starts)
        .map(|(&(offset, end, start, own_end), next)| Segment {
            offset,
            len: end - offset,
            seconds: (next.unwrap_or(own_end) - start).max(0.0),
        })
        .collect()
}

/// The playlist text, naming the recording `media_uri`.
pub fn playlist(index: &Index, media_uri: &str) -> String {
    let target = index
        .segments
        .iter()
        .map(|s| s.seconds.ceil() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-MAP:URI=\"{media_uri}\",BYTERANGE=\"{}@0\"\n",
        index.init_len
    );
    for s in &index.segments {
        out.push_str(&format!(
            "#EXTINF:{:.3},\n#EXT-X-BYTERANGE:{}@{}\n{media_uri}\n",
            s.seconds, s.len, s.offset
        ));
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// A stored playlist with its placeholder replaced by `media_uri` (a presigned link).
pub fn with_media(stored: &str, media_uri: &str) -> String {
    stored.replace(MEDIA_PLACEHOLDER, media_uri)
}

/// `room/rec-1.mp4` -> `room/rec-1.m3u8`.
pub fn playlist_key(key: &str) -> String {
    format!("{}.m3u8", key.strip_suffix(".mp4").unwrap_or(key))
}

/// Segment byte ranges parsed back from a playlist: (offset, len, seconds), init first with 0 s.
pub fn parse_ranges(playlist: &str) -> Vec<(u64, u64, f64)> {
    let mut out = Vec::new();
    let mut seconds = 0.0;
    for line in playlist.lines() {
        if let Some(map) = line.strip_prefix("#EXT-X-MAP:") {
            if let Some(range) = map.split("BYTERANGE=\"").nth(1) {
                out.extend(range_of(range.trim_end_matches('"'), 0.0));
            }
        } else if let Some(d) = line.strip_prefix("#EXTINF:") {
            seconds = d.trim_end_matches(',').parse().unwrap_or(0.0);
        } else if let Some(range) = line.strip_prefix("#EXT-X-BYTERANGE:") {
            out.extend(range_of(range, seconds));
        }
    }
    out
}

fn range_of(range: &str, seconds: f64) -> Option<(u64, u64, f64)> {
    let (len, offset) = range.split_once('@')?;
    Some((offset.parse().ok()?, len.parse().ok()?, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audio_before_video_joins_its_segment_and_trailing_audio_the_last() {
        let tracks = [
            Track {
                id: 1,
                timescale: 90_000,
                video: true,
                default_duration: 0,
            },
            Track {
                id: 2,
                timescale: 48_000,
                video: false,
                default_duration: 0,
            },
        ];
        let t = |track, start, duration| Timing {
            track,
            start,
            duration,
        };
        // Audio leads video by a little, as the recorder writes them.
        let fragments = [
            (100, 200, t(2, 0, 48_000)),
            (200, 500, t(1, 900, 90_000)),
            (500, 600, t(2, 48_000, 48_000)),
            (600, 900, t(1, 90_900, 45_000)),
            (900, 950, t(2, 96_000, 24_000)),
        ];
        let s = segments(&fragments, &tracks);
        assert_eq!(
            s,
            vec![
                Segment {
                    offset: 100,
                    len: 400,
                    seconds: 1.0
                },
                Segment {
                    offset: 500,
                    len: 450,
                    seconds: 0.51
                },
            ]
        );
        let index = Index {
            init_len: 100,
            segments: s,
        };
        let text = playlist(&index, MEDIA_PLACEHOLDER);
        assert!(text.contains("#EXT-X-MAP:URI=\"recording.mp4\",BYTERANGE=\"100@0\""));
        assert_eq!(
            parse_ranges(&text),
            vec![(0, 100, 0.0), (100, 400, 1.0), (500, 450, 0.51)]
        );
        let signed = with_media(&text, "https://s3/x.mp4?sig=1");
        assert!(!signed.contains(MEDIA_PLACEHOLDER) && signed.contains("x.mp4?sig=1"));
    }
}
