use store::{conformance, Store, StoreError, Txn, Write};

use crate::{EmbeddedStore, FORMAT};

#[tokio::test]
async fn conformance_suite() {
    let dirs: std::cell::RefCell<Vec<tempfile::TempDir>> = Default::default();
    conformance::run_all(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let (s, _) = EmbeddedStore::open(dir.path()).expect("open");
        dirs.borrow_mut().push(dir);
        s
    })
    .await;
}

#[tokio::test]
async fn restart_recovers_everything_and_cuts_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ids = Vec::new();
    {
        let (s, _) = EmbeddedStore::open(dir.path()).expect("open");
        for i in 0..50 {
            let oi = conformance::intent(vec![conformance::square(i as f64 * 200.0, 100.0, 0, 60)], None);
            ids.push(oi.id);
            s.commit(Txn { preconditions: vec![], writes: vec![Write::PutIntent(oi)] }).await.expect("commit");
        }
        s.commit(Txn { preconditions: vec![], writes: vec![Write::DeleteIntent(ids[0])] }).await.expect("delete");
        s.shutdown();
    }
    // A half-written record at the end of the log, as a crash mid-write leaves it.
    let segment = std::fs::read_dir(dir.path())
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("wal-")))
        .max()
        .expect("a log segment");
    // The log is written into space allocated ahead (zeros): the torn record lands right after
    // the last whole one.
    let (_, end, _) = crate::replay(&segment, &mut store_index::MemoryIndex::loading(), 0).expect("replay");
    let f = std::fs::OpenOptions::new().write(true).open(&segment).expect("log");
    std::os::unix::fs::FileExt::write_all_at(&f, &[200, 0, 0, 0, 1, 2, 3, 4, 5, 6], end as u64).expect("torn bytes");
    drop(f);
    let (s, report) = EmbeddedStore::open(dir.path()).expect("reopen");
    assert_eq!(report.torn_tail_bytes, 10);
    assert_eq!(report.intents, 49);
    assert!(s.get_intent(ids[0]).await.expect("get").is_none());
    for id in &ids[1..] {
        assert!(s.get_intent(*id).await.expect("get").is_some());
    }
    // A second process on the same directory is refused while this one lives.
    assert!(EmbeddedStore::open(dir.path()).is_err());
    // And once more: the compacted snapshot alone must hold the same state.
    s.shutdown();
    let (s, report) = EmbeddedStore::open(dir.path()).expect("reopen twice");
    assert_eq!(report.intents, 49);
    assert!(s.get_intent(ids[1]).await.expect("get").is_some());
}

#[tokio::test]
async fn remote_id_records_survive_a_restart_and_a_compaction() {
    let dir = tempfile::tempdir().expect("tempdir");
    let isa = conformance::isa(conformance::square(0.0, 100.0, 0, 60));
    let sub = conformance::rid_subscription(conformance::square(0.0, 500.0, 0, 600));
    {
        let (s, _) = EmbeddedStore::open(dir.path()).expect("open");
        let writes = vec![
            Write::PutIsa(isa.clone()),
            Write::PutRidSubscription(sub.clone()),
            Write::BumpRidNotificationIndex(sub.id),
        ];
        s.commit(Txn { preconditions: vec![], writes }).await.expect("commit");
        s.shutdown();
    }
    let expected = model::rid::RidSubscription { notification_index: 1, ..sub.clone() };
    // Replayed from the log, then (after the compaction that replay starts) from the snapshot.
    for life in ["log", "snapshot"] {
        let (s, _) = EmbeddedStore::open(dir.path()).expect("reopen");
        assert_eq!(*s.get_isa(isa.id).await.expect("get").expect(life).value, isa, "the ISA from the {life}");
        let got = s.get_rid_subscription(sub.id).await.expect("get").expect(life);
        assert_eq!(*got.value, expected, "the subscription, with its index, from the {life}");
        let area = [conformance::square(10.0, 10.0, 10, 20)];
        assert_eq!(s.search_isas(&area, store::Match::Exact).await.expect("search").len(), 1, "{life}");
        s.shutdown();
    }
}

#[tokio::test]
async fn the_data_directory_carries_its_format_and_a_newer_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (store, _) = EmbeddedStore::open(dir.path()).expect("open");
        drop(store);
    }
    let format = dir.path().join("FORMAT");
    assert_eq!(std::fs::read_to_string(&format).expect("FORMAT written"), format!("deconflict-store {FORMAT}\n"));
    // A directory from before formats were recorded is format 1: opened and marked.
    std::fs::remove_file(&format).expect("remove");
    drop(EmbeddedStore::open(dir.path()).expect("reopen"));
    assert!(format.exists());
    // Written by a newer binary: refused, and left as it is.
    std::fs::write(&format, format!("deconflict-store {}\n", FORMAT + 1)).expect("write");
    match EmbeddedStore::open(dir.path()) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("newer Deconflict") && m.contains("format 2"), "{m}"),
        Err(e) => panic!("wrong error: {e}"),
        Ok(_) => panic!("a newer format was opened"),
    }
    assert_eq!(std::fs::read_to_string(&format).expect("read"), format!("deconflict-store {}\n", FORMAT + 1));
    std::fs::write(&format, "something else\n").expect("write");
    assert!(EmbeddedStore::open(dir.path()).is_err(), "an unreadable FORMAT file is refused");
}
