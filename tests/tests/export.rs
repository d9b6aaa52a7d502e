//! Export gives back every original byte for byte, in album folders, with sidecars, and can be
//! re-run to fill in what is missing.

use std::collections::HashMap;

use anyhow::Result;
use kith_tests::corpus::{self, Expect};
use kith_tests::{TestNode, walk};
use serde_json::Value;

use crate::fixture::{ALBUM, corpus_library};

#[test]
fn export_gives_back_byte_identical_originals_and_fills_gaps() -> Result<()> {
    let lib = corpus_library();
    let node = lib.node();
    let out = tempfile::tempdir()?;
    let target = out.path().join("export");
    let (status, lines) = node.json_lines(&["export", target.to_str().unwrap(), "--json"])?;
    assert!(status.status.success(), "{lines:?}");
    let summary = lines.last().unwrap();
    let ok_rows: Vec<_> = corpus::manifest()?
        .into_iter()
        .filter(|r| r.expect == Expect::Ok)
        .collect();
    assert_eq!(summary["written"].as_u64(), Some(ok_rows.len() as u64));
    assert_eq!(summary["failed"], 0);

    // Every photo is in the album folder, under its name, byte-identical, with a sidecar.
    let album_dir = target.join(ALBUM);
    let mut sidecars: HashMap<String, Value> = HashMap::new();
    for file in walk(&album_dir)
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".kith.json"))
    {
        let v: Value = serde_json::from_slice(&std::fs::read(&file)?)?;
        sidecars.insert(v["id"].as_str().unwrap().to_owned(), v);
    }
    for row in &ok_rows {
        let id = lib
            .line_for(&row.path)
            .and_then(|l| l["id"].as_str())
            .unwrap()
            .to_owned();
        let sidecar = sidecars
            .get(&id)
            .unwrap_or_else(|| panic!("no sidecar for {}", row.path));
        assert_eq!(sidecar["albums"], serde_json::json!([ALBUM]));
        assert_eq!(sidecar["make"].as_str(), row.make.as_deref());
        let exported = lines
            .iter()
            .find(|l| l["id"] == Value::String(id.clone()))
            .and_then(|l| l["path"].as_str())
            .unwrap();
        assert_eq!(
            std::fs::read(exported)?,
            std::fs::read(row.abs_path())?,
            "{} is not byte-identical",
            row.path
        );
    }
    let names: Vec<String> = walk(&album_dir)
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with(".kith.json"))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for line in lib.lines.iter().filter(|l| l["status"] == "imported") {
        let name = std::path::Path::new(line["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(names.contains(&name), "{name} not exported under its name");
    }

    // A re-run writes nothing; after a file is lost, it writes just that one back.
    let (_, again) = node.json_lines(&["export", target.to_str().unwrap(), "--json"])?;
    assert_eq!(again.last().unwrap()["written"], 0);
    let source = corpus::dir().join("camera/canon-powershot-s40_flower.jpg");
    let victim = album_dir.join("canon-powershot-s40_flower.jpg");
    std::fs::remove_file(&victim)?;
    let (_, refill) = node.json_lines(&["export", target.to_str().unwrap(), "--json"])?;
    assert_eq!(refill.last().unwrap()["written"], 1);
    assert_eq!(std::fs::read(&victim)?, std::fs::read(source)?);
    Ok(())
}

#[test]
fn same_names_from_different_folders_are_both_exported() -> Result<()> {
    let node = TestNode::initialised()?;
    let src = tempfile::tempdir()?;
    for (dir, file) in [
        ("a", "camera/canon-powershot-s40_flower.jpg"),
        ("b", "camera/nokia-n70_iptc.jpg"),
    ] {
        std::fs::create_dir(src.path().join(dir))?;
        std::fs::copy(
            corpus::dir().join(file),
            src.path().join(dir).join("IMG_0001.JPG"),
        )?;
    }
    node.ok(&["import", src.path().to_str().unwrap()])?;
    let out = tempfile::tempdir()?;
    node.ok(&["export", out.path().to_str().unwrap()])?;
    let mut names: Vec<String> = walk(out.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".kith.json"))
        .collect();
    names.sort();
    assert_eq!(names, ["IMG_0001 (2).JPG", "IMG_0001.JPG"]);
    Ok(())
}

#[test]
fn export_of_one_album_holds_only_that_album() -> Result<()> {
    let node = TestNode::initialised()?;
    let a = corpus::dir().join("camera/canon-powershot-s40_flower.jpg");
    let b = corpus::dir().join("camera/nokia-n70_iptc.jpg");
    node.ok(&["import", a.to_str().unwrap(), "--album", "Garden"])?;
    node.ok(&["import", b.to_str().unwrap()])?;
    let out = tempfile::tempdir()?;
    node.ok(&["export", out.path().to_str().unwrap(), "--album", "Garden"])?;
    let files: Vec<_> = walk(out.path());
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files
            .iter()
            .all(|f| f.starts_with(out.path().join("Garden")))
    );
    Ok(())
}

#[test]
fn export_never_overwrites_a_file_that_is_not_its_own() -> Result<()> {
    let node = TestNode::initialised()?;
    let photo = corpus::dir().join("camera/canon-powershot-s40_flower.jpg");
    node.ok(&["import", photo.to_str().unwrap()])?;
    let out = tempfile::tempdir()?;
    let mine = out.path().join("canon-powershot-s40_flower.jpg");
    std::fs::write(&mine, b"a file of the user's own")?;
    node.ok(&["export", out.path().to_str().unwrap()])?;
    assert_eq!(std::fs::read(&mine)?, b"a file of the user's own");
    let written = out.path().join("canon-powershot-s40_flower (2).jpg");
    assert_eq!(std::fs::read(&written)?, std::fs::read(&photo)?);
    Ok(())
}
