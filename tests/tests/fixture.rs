//! One import of the whole corpus, shared by the tests that only need to read its result.
//! Tests that run commands on it work on their own copy (a data dir is locked while open).

use std::path::PathBuf;
use std::sync::OnceLock;

use kith_tests::{TestNode, corpus, parse_lines};
use serde_json::Value;

pub const ALBUM: &str = "Summer 2026";

pub struct CorpusLibrary {
    pub data_dir: PathBuf,
    /// The `--json` lines of the import: one per file, then the summary.
    pub lines: Vec<Value>,
    pub exit_code: Option<i32>,
}

impl CorpusLibrary {
    /// The import's line for a corpus file.
    pub fn line_for(&self, rel_path: &str) -> Option<&Value> {
        let abs = corpus::dir().join(rel_path);
        self.lines
            .iter()
            .find(|l| l["path"].as_str().map(PathBuf::from) == Some(abs.clone()))
    }

    pub fn node(&self) -> TestNode {
        TestNode::copy_of(&self.data_dir).expect("copy of the corpus library")
    }
}

pub fn corpus_library() -> &'static CorpusLibrary {
    static LIBRARY: OnceLock<CorpusLibrary> = OnceLock::new();
    LIBRARY.get_or_init(|| {
        let data_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("corpus-library-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data_dir);
        let node = TestNode::new();
        let run = |args: &[&str]| {
            node.command(args)
                .env("KITH_DATA_DIR", &data_dir)
                .output()
                .expect("run kith")
        };
        let init = run(&["init", "--name", "Ana"]);
        assert!(
            init.status.success(),
            "init: {}",
            String::from_utf8_lossy(&init.stderr)
        );
        let corpus = corpus::dir();
        let out = run(&[
            "import",
            corpus.to_str().expect("utf-8 corpus path"),
            "--album",
            ALBUM,
            "--json",
        ]);
        let lines = parse_lines(&out.stdout).expect("import --json lines");
        assert!(
            !lines.is_empty(),
            "import printed nothing; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        CorpusLibrary {
            data_dir,
            lines,
            exit_code: out.status.code(),
        }
    })
}
