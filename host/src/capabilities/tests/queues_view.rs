//! `host:api/queues` through its view: grants (a queue's covers its dead-letter queue), leases,
//! the memory limit on received bodies.

use std::collections::BTreeMap;

use crate::capabilities::host::api::queues::{Error, Host, Message};
use crate::capabilities::queues::View;
use crate::manifest::{Grants, QueueSpec, QueuesGrant};

use super::{Declared, Env, TestCall, names};

fn granted(env: &Env, queues: &[&str], memory: u64) -> TestCall {
    let grants = Grants { queues: QueuesGrant(names(queues)), ..Grants::default() };
    // `jobs` dead-letters a message after its first delivery.
    let declared = Declared {
        queues: BTreeMap::from([("jobs".to_string(), QueueSpec { max_attempts: 1 })]),
        ..Declared::default()
    };
    TestCall::new(&env.services, grants, declared, memory)
}

async fn receive(view: &mut View<'_>, queue: &str, max: u32) -> Result<Vec<Message>, Error> {
    Host::receive(view, queue.into(), max, 60_000).await.unwrap()
}

#[tokio::test]
async fn queues_view_uses_only_granted_queues() {
    let env = Env::new();
    let mut nothing = TestCall::new(&env.services, Grants::default(), Declared::default(), 1 << 20);
    let mut view = View::from(nothing.parts());
    assert!(matches!(Host::send(&mut view, "jobs".into(), vec![1], 0).await.unwrap(), Err(Error::AccessDenied)));
    assert!(matches!(receive(&mut view, "jobs", 1).await, Err(Error::AccessDenied)));

    let mut call = granted(&env, &["jobs"], 1 << 20);
    let mut view = View::from(call.parts());
    assert!(matches!(Host::send(&mut view, "other".into(), vec![1], 0).await.unwrap(), Err(Error::AccessDenied)));
    assert!(matches!(receive(&mut view, "other.dead", 1).await, Err(Error::AccessDenied)));
    assert!(matches!(receive(&mut view, "jobs", 0).await, Err(Error::Invalid(_))), "max is 1 to 100");
    let forged = Host::complete(&mut view, "not a lease".into()).await.unwrap();
    assert!(matches!(forged, Err(Error::Invalid(m)) if m.starts_with("lease `not a lease`: expected one")));
}

#[tokio::test]
async fn queues_view_sends_receives_completes_and_dead_letters() {
    let env = Env::new();
    let mut call = granted(&env, &["jobs", "mail"], 1 << 20);
    let mut view = View::from(call.parts());
    let id = Host::send(&mut view, "mail".into(), b"hi".to_vec(), 0).await.unwrap().unwrap();
    let got = receive(&mut view, "mail", 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].id.as_str(), got[0].body.as_slice(), got[0].attempt), (id.as_str(), &b"hi"[..], 1));
    assert!(receive(&mut view, "mail", 10).await.unwrap().is_empty(), "a leased message is not handed out again");
    Host::retry(&mut view, got[0].lease.clone(), 0).await.unwrap().unwrap();
    let again = receive(&mut view, "mail", 10).await.unwrap();
    assert_eq!((again[0].id.as_str(), again[0].attempt), (id.as_str(), 2), "given back, delivered again");
    let stale = Host::complete(&mut view, got[0].lease.clone()).await.unwrap();
    assert!(matches!(stale, Err(Error::LeaseExpired)), "the first lease ended with the retry");
    Host::complete(&mut view, again[0].lease.clone()).await.unwrap().unwrap();
    let completed = Host::retry(&mut view, again[0].lease.clone(), 0).await.unwrap();
    assert!(matches!(completed, Err(Error::LeaseExpired)), "a completed message cannot be given back");
    assert!(receive(&mut view, "mail", 10).await.unwrap().is_empty(), "completed messages are gone");

    // `jobs` allows one delivery: a retry moves the message to `jobs.dead`, which its grant covers.
    let id = Host::send(&mut view, "jobs".into(), b"job".to_vec(), 0).await.unwrap().unwrap();
    let lease = receive(&mut view, "jobs", 1).await.unwrap().remove(0).lease;
    Host::retry(&mut view, lease, 0).await.unwrap().unwrap();
    assert!(receive(&mut view, "jobs", 10).await.unwrap().is_empty());
    let dead = receive(&mut view, "jobs.dead", 10).await.unwrap();
    assert_eq!((dead.len(), dead[0].id.as_str(), dead[0].body.as_slice()), (1, id.as_str(), &b"job"[..]));
    Host::complete(&mut view, dead[0].lease.clone()).await.unwrap().unwrap();
}

#[tokio::test]
async fn queues_view_refuses_leases_of_queues_not_granted() {
    let env = Env::new();
    let mut owner = granted(&env, &["jobs"], 1 << 20);
    let mut view = View::from(owner.parts());
    Host::send(&mut view, "jobs".into(), b"job".to_vec(), 0).await.unwrap().unwrap();
    let lease = receive(&mut view, "jobs", 1).await.unwrap().remove(0).lease;
    let mut other = granted(&env, &["mail"], 1 << 20);
    let mut view = View::from(other.parts());
    assert!(matches!(Host::complete(&mut view, lease.clone()).await.unwrap(), Err(Error::AccessDenied)));
    assert!(matches!(Host::retry(&mut view, lease.clone(), 0).await.unwrap(), Err(Error::AccessDenied)));
    let mut view = View::from(owner.parts());
    Host::complete(&mut view, lease).await.unwrap().expect("still the owner's current lease");
}

#[tokio::test]
async fn queues_view_hands_out_no_more_bodies_than_the_memory_limit_holds() {
    let env = Env::new();
    let mut call = granted(&env, &["mail"], 1 << 10);
    let mut view = View::from(call.parts());
    for body in [vec![1; 600], vec![2; 600]] {
        Host::send(&mut view, "mail".into(), body, 0).await.unwrap().unwrap();
    }
    let first = receive(&mut view, "mail", 10).await.unwrap();
    assert_eq!(first.len(), 1, "the second body would pass the limit: it waits for the next receive");
    let second = receive(&mut view, "mail", 10).await.unwrap();
    assert_eq!(second[0].body, vec![2; 600]);

    Host::send(&mut view, "mail".into(), vec![3; 2 << 10], 0).await.unwrap().unwrap();
    let big = Host::receive(&mut view, "mail".into(), 10, 60_000).await;
    let message = big.expect_err("a body bigger than the memory limit ends the call").to_string();
    assert!(message.contains("receiving from queue `mail` would need 2048 bytes"), "{message}");
    assert_eq!(call.memory.denied_memory(), Some(2 << 10), "reported as the memory limit");
}
