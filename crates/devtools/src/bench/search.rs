//! search_p95_ms_1m_*: full-text search latency over a million stored transcript segments, in
//! SQLite and in PostgreSQL (a throwaway cluster). Segments are 6 to 16 words drawn from a
//! Zipf-distributed vocabulary of 20,000 made-up words (as word frequencies in speech are), in
//! 1,000 meetings of 20 rooms and 8 speakers; queries are one or two words of middling
//! frequency, a third of them filtered by room or speaker, through `Store::search` exactly as the
//! CLI and API call it.

use std::time::Instant;

use anyhow::Result;

use super::row;
use meeting_agent::store::{SearchQuery, Store};

const VOCABULARY: usize = 20_000;
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "be", "da", "fe", "go", "hu", "ji", "pa", "ze",
];

/// A deterministic pseudo-random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

fn word(rank: usize) -> String {
    let mut n = rank + 17;
    let mut w = String::new();
    while n > 0 {
        w.push_str(SYLLABLES[n % SYLLABLES.len()]);
        n /= SYLLABLES.len();
    }
    w
}

/// Zipf(1) ranks by inverse transform over the cumulative weights.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                acc += 1.0 / k as f64;
                acc
            })
            .collect();
        let total = acc;
        cdf.iter_mut().for_each(|c| *c /= total);
        Self(cdf)
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.0.partition_point(|&c| c < u).min(self.0.len() - 1)
    }
}

type SegmentRow = (String, String, String, String, String, i64, i64, i64);

fn generate(count: usize) -> Vec<SegmentRow> {
    let (mut rng, zipf) = (Rng(0x9e37_79b9_7f4a_7c15), Zipf::new(VOCABULARY));
    (0..count)
        .map(|i| {
            let meeting = i / (count / 1000).max(1);
            let words = 6 + (rng.next() % 11) as usize;
            let text: Vec<String> = (0..words).map(|_| word(zipf.sample(&mut rng))).collect();
            let start = (i % (count / 1000).max(1)) as i64 * 4_000;
            (
                format!("m{meeting}/SG_{i}"),
                format!("m{meeting}"),
                format!("room-{}", meeting % 20),
                format!("speaker-{}", rng.next() % 8),
                text.join(" "),
                start,
                start + 3_000,
                1_764_000_000_000 + meeting as i64 * 3_600_000 + start,
            )
        })
        .collect()
}

async fn load(store: &Store, rows: &[SegmentRow]) -> Result<()> {
    match store {
        Store::Sqlite(pool) => {
            for chunk in rows.chunks(1000) {
                let mut tx = pool.begin().await?;
                let mut seen = std::collections::HashSet::new();
                for r in chunk {
                    if seen.insert(r.1.clone()) {
                        sqlx::query("INSERT INTO meetings (id, room, started_at, thread_id) VALUES (?1, ?2, ?3, ?1 || '/root') ON CONFLICT (id) DO NOTHING")
                            .bind(&r.1).bind(&r.2).bind(r.7).execute(&mut *tx).await?;
                    }
                    sqlx::query("INSERT INTO transcript_segments (id, meeting_id, room, speaker, text, start_ms, end_ms, spoken_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")
                        .bind(&r.0).bind(&r.1).bind(&r.2).bind(&r.3).bind(&r.4).bind(r.5).bind(r.6).bind(r.7)
                        .execute(&mut *tx).await?;
                }
                tx.commit().await?;
            }
        }
        Store::Postgres(pool) => {
            for chunk in rows.chunks(10_000) {
                let col = |f: fn(&SegmentRow) -> String| chunk.iter().map(f).collect::<Vec<_>>();
                let num = |f: fn(&SegmentRow) -> i64| chunk.iter().map(f).collect::<Vec<_>>();
                sqlx::query("INSERT INTO meetings (id, room, started_at, thread_id) SELECT DISTINCT ON (m) m, r, to_timestamp(t / 1000.0), m || '/root' FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS u(m, r, t) ON CONFLICT (id) DO NOTHING")
                    .bind(col(|r| r.1.clone())).bind(col(|r| r.2.clone())).bind(num(|r| r.7))
                    .execute(pool).await?;
                sqlx::query("INSERT INTO transcript_segments (id, meeting_id, room, speaker, text, start_ms, end_ms, spoken_at) SELECT i, m, r, s, x, a, b, to_timestamp(t / 1000.0) FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[], $8::bigint[]) AS u(i, m, r, s, x, a, b, t)")
                    .bind(col(|r| r.0.clone())).bind(col(|r| r.1.clone())).bind(col(|r| r.2.clone()))
                    .bind(col(|r| r.3.clone())).bind(col(|r| r.4.clone()))
                    .bind(num(|r| r.5)).bind(num(|r| r.6)).bind(num(|r| r.7))
                    .execute(pool).await?;
            }
            sqlx::query("ANALYZE").execute(pool).await?;
        }
    }
    Ok(())
}

fn queries(n: usize) -> Vec<SearchQuery> {
    let mut rng = Rng(42);
    (0..n)
        .map(|i| {
            // Middling frequency: ranks 50 to 5,000 of the vocabulary.
            let pick = |rng: &mut Rng| word(50 + (rng.next() % 4_950) as usize);
            let text = if i % 2 == 0 {
                pick(&mut rng)
            } else {
                format!("{} {}", pick(&mut rng), pick(&mut rng))
            };
            SearchQuery {
                text,
                room: (i % 3 == 1).then(|| format!("room-{}", rng.next() % 20)),
                speaker: (i % 3 == 2).then(|| format!("speaker-{}", rng.next() % 8)),
                limit: 20,
                ..Default::default()
            }
        })
        .collect()
}

async fn measure(name: &str, store: &Store, segments: usize, n: usize) -> Result<()> {
    let started = Instant::now();
    load(store, &generate(segments)).await?;
    eprintln!(
        "{name}: {segments} segments stored in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let queries = queries(n);
    // One pass to warm the caches, as a running service has them.
    for q in &queries {
        store.search(q).await?;
    }
    let mut times = Vec::with_capacity(n);
    let mut hits = 0;
    for q in &queries {
        let t = Instant::now();
        hits += store.search(q).await?.len();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let pct = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "{name}: {n} queries, {:.1} hits each; p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        hits as f64 / n as f64,
        pct(0.5),
        pct(0.95),
        pct(1.0)
    );
    let millions = segments as f64 / 1e6;
    row(
        &format!("search_p95_ms_1m_{name}"),
        pct(0.95),
        &format!("ms ({millions} M segments, p50 {:.1})", pct(0.5)),
        "<= 50",
        &format!("meeting-agent-dev bench search --segments {segments}"),
    );
    Ok(())
}

pub async fn search(segments: usize, queries: usize) -> Result<()> {
    let dir =
        std::env::temp_dir().join(format!("meeting-agent-search-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let sqlite = Store::connect(&format!("sqlite:{}", dir.join("bench.db").display())).await?;
    measure("sqlite", &sqlite, segments, queries).await?;
    drop(sqlite);
    let pg = crate::LocalPostgres::start()?;
    let postgres = Store::connect(&pg.url()).await?;
    measure("postgres", &postgres, segments, queries).await?;
    std::fs::remove_dir_all(dir).ok();
    Ok(())
}
