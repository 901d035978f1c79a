//! The envelope checks of the handler, command by command, without I/O:
//! each line is parsed as the session parses it ([`Staged::of`]) and given
//! to the handler as `mailin` would, on the demo policy.

use std::net::IpAddr;
use std::sync::Arc;

use mailin::Response;

use super::command::Staged;
use super::handler::{Intake, Pending};
use crate::clock::EvalTime;
use crate::policy::Policy;

const ANNA: &str = "anna@justice.aa.example";
const BORIS: &str = "boris@justice.bb.example";

struct Case {
    intake: Intake,
    _dir: tempfile::TempDir,
}

fn policy() -> (Arc<Policy>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policy_dir = crate::demo::pki::create(dir.path(), 2).unwrap();
    let policy = crate::policy::load(&policy_dir, EvalTime::now())
        .unwrap_or_else(|d| panic!("demo policy does not load: {d:?}"));
    (Arc::new(policy), dir)
}

impl Case {
    fn new() -> Case {
        let (policy, dir) = policy();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let mut intake = Intake::new(ip, false, Box::new(move || policy.clone()));
        intake.helo(ip, "client.example");
        Case { intake, _dir: dir }
    }

    /// The reply to `line` (MAIL or RCPT), as `code text`, and whether an
    /// audit record is pending for it.
    fn say(&mut self, line: &str) -> (String, bool) {
        let wire = format!("{line}\r\n");
        let (staged, _) = Staged::of(wire.as_bytes()).expect("MAIL or RCPT");
        let is_mail = matches!(staged, Staged::Mail(_));
        self.intake.stage(Some(staged));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let r: Response = if is_mail {
            self.intake.mail(ip, "client.example", "staged")
        } else {
            self.intake.rcpt("staged")
        };
        let text = String::from_utf8(r.buffer().unwrap()).unwrap();
        let audited = matches!(self.intake.take_pending(), Pending::Refusal(..));
        (text.trim_end().to_owned(), audited)
    }

    fn ok(&mut self, line: &str) {
        let (r, _) = self.say(line);
        assert!(r.starts_with("250 "), "{line}: {r}");
    }

    /// Ends DATA and returns the transaction.
    fn transaction(&mut self) -> super::handler::Transaction {
        assert_eq!(
            self.intake
                .data_start("client.example", "", false, &[])
                .code,
            354
        );
        self.intake.data(b"Subject: x\r\n\r\nx\r\n").unwrap();
        self.intake.data_end();
        match self.intake.take_pending() {
            Pending::Message(tx) => tx,
            _ => panic!("no transaction"),
        }
    }
}

#[test]
fn invalid_paths_are_refused_as_bad_address_and_audited() {
    let mut c = Case::new();
    let long_local = format!("{}@justice.aa.example", "x".repeat(65));
    let long_path = format!("{}@{}", "x".repeat(60), vec!["d".repeat(60); 4].join("."));
    for bad in [
        "an\0na@justice.aa.example",
        "an\x1b[32mna@justice.aa.example",
        "@justice.aa.example",
        "anna@@justice.aa.example",
        "anna@justice@aa.example",
        "anna@justice..aa.example",
        "anna@-justice.aa.example",
        "anna",
        long_local.as_str(),
        long_path.as_str(),
    ] {
        let (r, audited) = c.say(&format!("MAIL FROM:<{bad}>"));
        assert!(r.starts_with("501 5.1.7 bad-address: "), "{bad:?}: {r}");
        assert!(audited, "{bad:?} not audited");
        assert!(!r.contains('\x1b') && !r.contains('\0'), "{r:?}");
    }
    c.ok(&format!("MAIL FROM:<{ANNA}>"));
    for bad in [
        "",
        "boris@@justice.bb.example",
        "bo\x7fris@justice.bb.example",
    ] {
        let (r, audited) = c.say(&format!("RCPT TO:<{bad}>"));
        assert!(r.starts_with("501 5.1.3 bad-address: "), "{bad:?}: {r}");
        assert!(audited, "{bad:?} not audited");
    }
    let (r, audited) = c.say("RCPT TO:<börje@justice.bb.example>");
    assert!(r.starts_with("553 5.6.7 bad-address: "), "{r}");
    assert!(audited);
    // A source route is accepted and dropped.
    c.ok(&format!("RCPT TO:<@relay.example,@other.example:{BORIS}>"));
    assert_eq!(c.transaction().rcpt_to, vec![BORIS.to_string()]);
}

#[test]
fn the_null_reverse_path_is_accepted_and_routed_by_from() {
    let mut c = Case::new();
    c.ok("MAIL FROM:<>");
    // Its recipients must still be an authority's.
    let (r, audited) = c.say("RCPT TO:<someone@unknown.example>");
    assert!(r.starts_with("550 5.7.1 unauthorized-domain: "), "{r}");
    assert!(audited);
    c.ok(&format!("RCPT TO:<{BORIS}>"));
    let tx = c.transaction();
    assert_eq!((tx.mail_from.as_str(), tx.rcpt_to.len()), ("", 1));
}

#[test]
fn duplicate_recipients_are_merged_case_insensitively() {
    let mut c = Case::new();
    c.ok(&format!("MAIL FROM:<{ANNA}>"));
    c.ok(&format!("RCPT TO:<{BORIS}> NOTIFY=NEVER"));
    let (r, _) = c.say(&format!("RCPT TO:<{}>", BORIS.to_uppercase()));
    assert_eq!(r, "250 2.1.5 Recipient OK (already given)");
    c.ok(&format!("RCPT TO:<{BORIS}> NOTIFY=SUCCESS"));
    let tx = c.transaction();
    assert_eq!(tx.rcpt_to, vec![BORIS.to_string()]);
    // The first RCPT's parameters stay.
    assert_eq!(tx.dsn.recipients.len(), 1);
    assert!(tx.dsn.recipients[0].notify.unwrap().is_never());
}

#[test]
fn dsn_parameters_are_kept_with_the_transaction() {
    let mut c = Case::new();
    c.ok(&format!(
        "MAIL FROM:<{ANNA}> RET=HDRS ENVID=QQ+2B314159 SIZE=100"
    ));
    c.ok(&format!(
        "RCPT TO:<{BORIS}> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;{BORIS}"
    ));
    let tx = c.transaction();
    assert_eq!(tx.dsn.ret, Some(crate::envelope::Ret::Hdrs));
    assert_eq!(tx.dsn.envid.as_deref(), Some("QQ+314159"));
    let r = tx.dsn.recipient(BORIS).unwrap();
    assert_eq!(r.notify.unwrap().to_string(), "SUCCESS,FAILURE");
    assert_eq!(r.orcpt.as_deref(), Some(&*format!("rfc822;{BORIS}")));

    let mut c = Case::new();
    for (line, want) in [
        (format!("MAIL FROM:<{ANNA}> SIZE=abc"), "501 5.5.4 "),
        (format!("MAIL FROM:<{ANNA}> X-UNKNOWN=1"), "555 5.5.4 "),
        (format!("MAIL FROM:<{ANNA}> SMTPUTF8"), "555 5.5.4 "),
        (format!("MAIL FROM:<{ANNA}> ENVID=a+zz"), "501 5.5.4 "),
        (format!("MAIL FROM:<{ANNA}> RET=ALL"), "501 5.5.4 "),
    ] {
        let (r, audited) = c.say(&line);
        assert!(r.starts_with(want), "{line}: {r}");
        assert!(!audited, "{line}: a parameter error is not audited");
    }
    c.ok(&format!("MAIL FROM:<{ANNA}>"));
    for (line, want) in [
        (
            format!("RCPT TO:<{BORIS}> NOTIFY=NEVER,SUCCESS"),
            "501 5.5.4 ",
        ),
        (format!("RCPT TO:<{BORIS}> ORCPT=nosemicolon"), "501 5.5.4 "),
        (format!("RCPT TO:<{BORIS}> RET=FULL"), "555 5.5.4 "),
    ] {
        let (r, _) = c.say(&line);
        assert!(r.starts_with(want), "{line}: {r}");
    }
}

#[test]
fn postmaster_mail_goes_in_a_transaction_of_its_own() {
    let mut c = Case::new();
    let dir = tempfile::tempdir().unwrap();
    c.intake.postmaster_box = Some(crate::config::PostmasterConfig {
        dir: dir.path().to_path_buf(),
        max_messages: 1,
        max_bytes: 1000,
        max_per_hour: 10,
    });
    c.ok("MAIL FROM:<>");
    c.ok("RCPT TO:<PostMaster>");
    let (r, _) = c.say(&format!(
        "RCPT TO:<postmaster@{}>",
        crate::demo::pki::HOSTNAME
    ));
    assert_eq!(r, "250 2.1.5 Recipient OK (already given)");
    let (r, _) = c.say(&format!("RCPT TO:<{BORIS}>"));
    assert!(r.starts_with("452 4.5.3 "), "{r}");
    let tx = c.transaction();
    assert!(tx.postmaster);
    assert_eq!(
        tx.rcpt_to,
        vec![format!("postmaster@{}", crate::demo::pki::HOSTNAME)]
    );

    c.ok(&format!("MAIL FROM:<{ANNA}>"));
    c.ok(&format!("RCPT TO:<{BORIS}>"));
    let (r, _) = c.say("RCPT TO:<postmaster>");
    assert!(r.starts_with("452 4.5.3 "), "{r}");
    // A full mailbox refuses at RCPT.
    std::fs::write(dir.path().join("x.eml"), b"kept").unwrap();
    c.ok(&format!("MAIL FROM:<{ANNA}>"));
    let (r, _) = c.say("RCPT TO:<postmaster>");
    assert!(
        r.starts_with("452 4.2.2 the postmaster mailbox is full"),
        "{r}"
    );
}
