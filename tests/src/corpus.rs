//! The shared photo corpus (`../shared/corpus`) and its MANIFEST.tsv.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

/// Where the corpus is: `KITH_CORPUS`, else `shared/corpus` beside the repo (as in CI).
pub fn dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KITH_CORPUS") {
        return PathBuf::from(dir);
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for ancestor in manifest.ancestors() {
        let candidate = ancestor.join("shared").join("corpus");
        if candidate.join("MANIFEST.tsv").exists() {
            return candidate;
        }
    }
    panic!("the photo corpus was not found: put shared/corpus beside the repo or set KITH_CORPUS");
}

/// What import must do with a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Expect {
    Ok,
    DuplicateOf(String),
    Reject(String),
}

/// One MANIFEST row.
#[derive(Debug, Clone)]
pub struct Row {
    pub path: String,
    pub format: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub display_width: Option<u32>,
    pub display_height: Option<u32>,
    pub make: Option<String>,
    pub model: Option<String>,
    /// `YYYY:MM:DD HH:MM:SS` as exiftool prints it.
    pub datetime_original: Option<String>,
    pub orientation: Option<u16>,
    pub gps: Option<(f64, f64)>,
    pub expect: Expect,
}

impl Row {
    pub fn abs_path(&self) -> PathBuf {
        dir().join(&self.path)
    }
    pub fn file_name(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or(&self.path)
    }
    /// taken-at as kith stores it: `YYYY-MM-DDTHH:MM:SS`.
    pub fn taken_at(&self) -> Option<String> {
        self.datetime_original.as_ref().map(|d| {
            let (date, time) = d.split_once(' ').unwrap_or((d, ""));
            format!("{}T{}", date.replace(':', "-"), time)
        })
    }
}

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

pub fn manifest() -> Result<Vec<Row>> {
    let path = dir().join("MANIFEST.tsv");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines
        .next()
        .context("empty MANIFEST")?
        .split('\t')
        .collect();
    let col = |name: &str| -> Result<usize> {
        header
            .iter()
            .position(|h| *h == name)
            .with_context(|| format!("MANIFEST has no column {name}"))
    };
    let (c_path, c_format, c_w, c_h, c_dw, c_dh) = (
        col("path")?,
        col("format")?,
        col("width")?,
        col("height")?,
        col("display_width")?,
        col("display_height")?,
    );
    let (c_make, c_model, c_dt, c_or, c_lat, c_lon, c_expect) = (
        col("make")?,
        col("model")?,
        col("datetime_original")?,
        col("orientation")?,
        col("gps_lat")?,
        col("gps_lon")?,
        col("expect")?,
    );
    let mut rows = Vec::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let expect = match get(c_expect) {
            "ok" => Expect::Ok,
            e if e.starts_with("duplicate-of:") => {
                Expect::DuplicateOf(e["duplicate-of:".len()..].to_owned())
            }
            e if e.starts_with("reject:") => Expect::Reject(e["reject:".len()..].to_owned()),
            other => bail!("unknown expect {other:?} in MANIFEST"),
        };
        let gps = match (opt(get(c_lat)), opt(get(c_lon))) {
            (Some(lat), Some(lon)) => Some((lat.parse()?, lon.parse()?)),
            _ => None,
        };
        rows.push(Row {
            path: get(c_path).to_owned(),
            format: get(c_format).to_owned(),
            width: opt(get(c_w)).map(|v| v.parse()).transpose()?,
            height: opt(get(c_h)).map(|v| v.parse()).transpose()?,
            display_width: opt(get(c_dw)).map(|v| v.parse()).transpose()?,
            display_height: opt(get(c_dh)).map(|v| v.parse()).transpose()?,
            make: opt(get(c_make)),
            model: opt(get(c_model)),
            datetime_original: opt(get(c_dt)),
            orientation: opt(get(c_or)).map(|v| v.parse()).transpose()?,
            gps,
            expect,
        });
    }
    Ok(rows)
}

/// The camera JPEGs that import must accept, in MANIFEST order.
pub fn importable_jpegs() -> Result<impl Iterator<Item = Row>> {
    Ok(manifest()?
        .into_iter()
        .filter(|r| r.expect == Expect::Ok && r.path.ends_with(".jpg")))
}

/// The first `n` camera JPEGs that import must accept; an error if the corpus has fewer.
pub fn jpegs(n: usize) -> Result<Vec<Row>> {
    let rows: Vec<Row> = importable_jpegs()?.take(n).collect();
    ensure!(rows.len() == n, "the corpus has fewer than {n} JPEGs");
    Ok(rows)
}

/// Paths of the first `n` camera JPEGs that import must accept, to keep tests quick.
pub fn some_photos(n: usize) -> Result<Vec<String>> {
    more_photos(0, n)
}

/// Paths of the `n` camera JPEGs that import must accept after the first `skip`: photos a test
/// imports later, none of them among `some_photos(skip)`.
pub fn more_photos(skip: usize, n: usize) -> Result<Vec<String>> {
    let rows: Vec<Row> = importable_jpegs()?.skip(skip).take(n).collect();
    Ok(paths(&rows))
}

/// The files of `rows`, as `kith import` takes them.
pub fn paths(rows: &[Row]) -> Vec<String> {
    rows.iter()
        .map(|r| r.abs_path().display().to_string())
        .collect()
}
