use std::time::Duration;

use http::uri::Authority;
use http::HeaderValue;

use super::*;
use crate::metrics::Metrics;
use crate::per_thread::OwnerId;

fn group(count: usize, balance: Balance, health: UpstreamHealth) -> UpstreamGroup {
    let metrics = Metrics::new();
    let instances = (0..count)
        .map(|index| {
            let label = format!("10.0.0.{index}:80");
            let upstream = Upstream {
                authority: Authority::try_from(label.as_str()).unwrap(),
                host_header: HeaderValue::from_str(&label).unwrap(),
                tls: None,
                pool: OwnerId::new(),
            };
            Instance::new(upstream, &label, metrics.upstream_instance("/api", &label))
        })
        .collect();
    UpstreamGroup::new("/api", instances, balance, health)
}

fn picks(group: &UpstreamGroup, openid: Option<&str>, times: usize) -> Vec<usize> {
    (0..times)
        .map(|_| group.pick(openid, None).unwrap())
        .collect()
}

#[test]
fn round_robin_takes_each_instance_in_turn_and_skips_one_taken_out() {
    let group = group(3, Balance::RoundRobin, UpstreamHealth::default());
    assert_eq!(picks(&group, None, 6), [0, 1, 2, 0, 1, 2]);
    for _ in 0..3 {
        group.failed(1, Outcome::ConnectFailed);
    }
    let seen = picks(&group, None, 30);
    assert!(!seen.contains(&1), "{seen:?}");
    assert!(seen.contains(&0) && seen.contains(&2));
    assert_eq!(group.instances()[1].metrics.healthy.get(), 0);
}

#[test]
fn failures_must_come_in_a_row_and_an_instance_is_tried_again_after_retry_after() {
    let health = UpstreamHealth {
        unhealthy_after: 2,
        retry_after: Duration::from_millis(50),
        ..UpstreamHealth::default()
    };
    let group = group(2, Balance::RoundRobin, health);
    group.failed(0, Outcome::TimedOut);
    group.answered(0);
    group.failed(0, Outcome::Failed);
    assert!(
        picks(&group, None, 4).contains(&0),
        "an answer ends the run"
    );
    group.failed(0, Outcome::Failed);
    assert!(!picks(&group, None, 4).contains(&0));
    std::thread::sleep(Duration::from_millis(80));
    assert!(picks(&group, None, 4).contains(&0), "tried again");
    // One more failure while on trial takes it out again at once.
    group.failed(0, Outcome::ConnectFailed);
    assert!(!picks(&group, None, 4).contains(&0));
    std::thread::sleep(Duration::from_millis(80));
    group.answered(0);
    assert_eq!(group.instances()[0].metrics.healthy.get(), 1);
    assert_eq!(group.instances()[0].down_until.load(Ordering::Relaxed), 0);
}

#[test]
fn a_failed_check_takes_an_instance_out_until_a_check_passes() {
    let health = UpstreamHealth {
        retry_after: Duration::from_millis(1),
        ..UpstreamHealth::default()
    };
    let group = group(2, Balance::RoundRobin, health);
    group.checked(1, Err("status 503".into()));
    std::thread::sleep(Duration::from_millis(5));
    assert!(
        !picks(&group, None, 6).contains(&1),
        "retry_after does not bring it back"
    );
    group.checked(1, Ok(()));
    assert!(picks(&group, None, 6).contains(&1));
}

#[test]
fn every_instance_out_is_no_instance_but_a_group_of_one_is_never_out() {
    let pair = group(2, Balance::RoundRobin, UpstreamHealth::default());
    pair.checked(0, Err("down".into()));
    pair.checked(1, Err("down".into()));
    assert_eq!(pair.pick(None, None), None);

    let single = group(1, Balance::RoundRobin, UpstreamHealth::default());
    single.checked(0, Err("down".into()));
    for _ in 0..5 {
        single.failed(0, Outcome::ConnectFailed);
    }
    assert_eq!(single.pick(None, None), Some(0));
    assert_eq!(single.pick(None, Some(0)), None, "nowhere else to go");
}

#[test]
fn openid_hash_keeps_each_user_on_one_instance_and_moves_only_the_users_of_one_taken_out() {
    let group = group(3, Balance::OpenidHash, UpstreamHealth::default());
    let users: Vec<String> = (0..300).map(|n| format!("openid-{n}")).collect();
    let homes: Vec<usize> = users
        .iter()
        .map(|user| {
            let home = group.pick(Some(user), None).unwrap();
            assert!(picks(&group, Some(user), 5)
                .iter()
                .all(|&pick| pick == home));
            home
        })
        .collect();
    for instance in 0..3 {
        let share = homes.iter().filter(|&&home| home == instance).count();
        assert!(
            (60..=140).contains(&share),
            "instance {instance}: {share} of 300"
        );
    }
    group.checked(2, Err("down".into()));
    for (user, &home) in users.iter().zip(&homes) {
        let now = group.pick(Some(user), None).unwrap();
        match home {
            2 => assert_ne!(now, 2),
            _ => assert_eq!(now, home, "{user} moved though its instance is up"),
        }
    }
    // The same list in another order (another replica's config) sends users to the same hosts.
    let labels = |group: &UpstreamGroup, user: &str| {
        group.instances()[group.pick(Some(user), None).unwrap()]
            .label
            .to_string()
    };
    let again = super::tests::group(3, Balance::OpenidHash, UpstreamHealth::default());
    let reversed = UpstreamGroup::new(
        "/api",
        again.instances.into_vec().into_iter().rev().collect(),
        Balance::OpenidHash,
        UpstreamHealth::default(),
    );
    let fresh = super::tests::group(3, Balance::OpenidHash, UpstreamHealth::default());
    for user in &users {
        assert_eq!(labels(&fresh, user), labels(&reversed, user));
    }
}

#[test]
fn least_requests_prefers_the_instance_with_fewer_in_flight() {
    let group = Arc::new(group(3, Balance::LeastRequests, UpstreamHealth::default()));
    let busy: Vec<Load> = [0, 0, 1]
        .iter()
        .map(|&index| Load::new(&group, index))
        .collect();
    assert!(picks(&group, None, 6).iter().all(|&pick| pick == 2));
    drop(busy);
    let spread = picks(&group, None, 6);
    assert!(
        spread.contains(&0) && spread.contains(&1) && spread.contains(&2),
        "{spread:?}"
    );
    assert!(group
        .instances()
        .iter()
        .all(|instance| instance.in_flight.load(Ordering::Relaxed) == 0));
}
