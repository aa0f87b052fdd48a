use monitor::{Datapath, Maps};

#[test]
fn the_verifier_accepts_both_programs() {
    env_logger_init();
    let datapath = Datapath::load(&Maps::Private).unwrap_or_else(|e| panic!("load failed: {e:?}"));
    let mut frame = vec![0u8; 60];
    frame[12] = 0x08;
    frame[13] = 0x06; // ARP
    let verdict = datapath.test_run(&frame).expect("test run");
    assert_eq!(verdict.action, monitor_common::Action::Pass);
}

fn env_logger_init() {}
