//! A name cannot impersonate: names that pass for ids are refused where they are made, an
//! argument that is both a name and an id prefix is refused naming both, and text from the
//! library reaches the terminal with its control characters escaped.

use anyhow::Result;
use kith_tests::{TestNode, corpus};

fn stderr_of(node: &TestNode, args: &[&str]) -> Result<String> {
    let out = node.run(args)?;
    assert!(
        !out.status.success(),
        "kith {args:?} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_name_like_an_id_prefix_is_refused_where_it_is_made() -> Result<()> {
    let mut ana = TestNode::initialised()?;
    let status = ana.json(&["status", "--json"])?;
    let ana_device = status["device_id"].as_str().unwrap().to_owned();
    let prefix = &ana_device[..8];

    // A new device named like Ana's device id, in ASCII or with a Cyrillic "е"/"а" for e/a.
    let lookalike: String = ana_device[..10]
        .chars()
        .map(|c| match c {
            'e' => 'е',
            'a' => 'а',
            c => c,
        })
        .collect();
    for name in [prefix, &ana_device[..10].to_uppercase(), &lookalike] {
        let other = TestNode::new();
        let err = stderr_of(&other, &["init", "--name", "Bo", "--device-name", name])?;
        assert!(err.contains("looks like an id"), "{name:?}: {err}");
        assert!(!other.data_dir.join("kith.redb").exists());
        let err = stderr_of(&other, &["init", "--name", name])?;
        assert!(err.contains("looks like an id"), "{name:?}: {err}");
    }
    let err = stderr_of(&TestNode::new(), &["init", "--name", "Bo\u{1b}[2J"])?;
    assert!(err.contains("control, bidi or invisible"), "{err}");

    // Renaming oneself, through the running node too.
    let err = stderr_of(&ana, &["people", "rename", prefix])?;
    assert!(err.contains("looks like an id"), "{err}");
    ana.start()?;
    let err = stderr_of(&ana, &["people", "rename", "\u{202E}anA"])?;
    assert!(err.contains("control, bidi or invisible"), "{err}");

    // Joining with a device name like the admin's device id: refused before anything is sent.
    let invite = ana.json(&["invite", "--json"])?;
    let ticket = invite["ticket"].as_str().unwrap();
    let bo = TestNode::new();
    let err = stderr_of(&bo, &["join", ticket, "--name", prefix, "--person", "Bo"])?;
    assert!(err.contains("looks like an id"), "{err}");
    let invites = ana.json(&["invites", "--json"])?;
    assert_eq!(invites[0]["state"], "pending", "{invites}");
    // A fine name joins with the same ticket.
    bo.ok(&["join", ticket, "--name", "Bo's phone", "--person", "Bo"])?;
    Ok(())
}

#[test]
fn an_argument_that_is_a_title_and_an_id_prefix_is_refused_naming_both() -> Result<()> {
    let node = TestNode::initialised()?;
    let photo = corpus::dir().join("camera/nokia-n70_iptc.jpg");
    node.ok(&["import", photo.to_str().unwrap(), "--album", "Beach"])?;
    let beach = node.json(&["albums", "--json"])?[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Album titles are free text: one titled like the other's id prefix.
    let decoy = beach[..8].to_owned();
    node.ok(&["albums", "create", &decoy])?;
    let photo_id = node.json(&["photos", "--json"])?[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let err = stderr_of(&node, &["albums", "add", &decoy, &photo_id])?;
    assert!(err.contains("ambiguous"), "{err}");
    assert!(
        err.contains(&beach),
        "the id-prefix candidate is listed: {err}"
    );
    assert!(
        err.contains(&format!("{decoy:?}")),
        "the titled one is listed: {err}"
    );
    let albums = node.json(&["albums", "--json"])?;
    let decoy_album = albums
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == decoy.as_str())
        .unwrap();
    assert_eq!(decoy_album["photos"], 0, "nothing was added: {albums}");
    // More characters of the id say which one.
    node.ok(&["albums", "add", &beach[..16], &photo_id])?;
    Ok(())
}

#[test]
fn captions_and_tags_are_printed_with_control_characters_escaped() -> Result<()> {
    let node = TestNode::initialised()?;
    let photo = corpus::dir().join("camera/nokia-n70_iptc.jpg");
    node.ok(&["import", photo.to_str().unwrap()])?;
    let id = node.json(&["photos", "--json"])?[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let caption = "Hi\u{1b}[2J\u{1b}]0;pwned\u{7}\r\u{202E}gpj.exe";
    node.ok(&[
        "photos",
        "edit",
        &id,
        "--caption",
        caption,
        "--tag",
        // Control characters in tags are refused when typed; a bidi override is not.
        "t\u{202E}gpj",
    ])?;

    for args in [vec!["photos", "show", &id], vec!["photos"]] {
        let shown = node.ok(&args)?;
        assert!(
            !shown.contains(['\u{1b}', '\u{7}', '\r', '\u{202E}']),
            "kith {args:?} printed a raw control character: {shown:?}"
        );
        assert!(shown.contains("t\\u{202e}gpj"), "{shown}");
    }
    let shown = node.ok(&["photos", "show", &id])?;
    assert!(
        shown.contains("Hi\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\r\\u{202e}gpj.exe"),
        "{shown}"
    );
    // JSON keeps the text exact.
    let json = node.json(&["photos", "show", &id, "--json"])?;
    assert_eq!(json["caption"], caption);
    Ok(())
}
