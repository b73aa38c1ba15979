//! A second client: the `bollard` SDK (as Rust programs talk to Docker) drives berthd through
//! create, start, attach, logs, exec, inspect, wait, stats, events and remove.

mod common;

use std::collections::HashMap;

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, HostConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CreateContainerOptions, EventsOptions, InspectContainerOptions,
    LogsOptions, RemoveContainerOptions, StatsOptions, WaitContainerOptions,
};
use futures_util::StreamExt;

use common::Daemon;

fn text(chunks: &[LogOutput]) -> String {
    chunks.iter().map(|c| c.to_string()).collect()
}

#[test]
fn bollard_drives_the_container_lifecycle() {
    let d = Daemon::start();
    d.import_busybox();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let docker =
            Docker::connect_with_unix(&d.host(), 30, bollard::API_DEFAULT_VERSION).unwrap();
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let created = docker
            .create_container(
                Some(CreateContainerOptions {
                    name: Some("bl".into()),
                    ..Default::default()
                }),
                ContainerCreateBody {
                    image: Some("busybox".into()),
                    cmd: Some(vec![
                        "sh".into(),
                        "-c".into(),
                        "echo out; echo err >&2; sleep 1000".into(),
                    ]),
                    env: Some(vec!["FROM_SDK=yes".into()]),
                    labels: Some(HashMap::from([("sdk".into(), "bollard".into())])),
                    host_config: Some(HostConfig {
                        memory: Some(64 << 20),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(created.id.len(), 64);
        // Attach before the start: the output is caught from the first byte.
        let mut attached = docker
            .attach_container(
                "bl",
                Some(AttachContainerOptions {
                    stream: true,
                    stdout: true,
                    stderr: true,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        docker
            .start_container(
                "bl",
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .unwrap();
        let mut seen = Vec::new();
        while text(&seen).matches('\n').count() < 2 {
            seen.push(attached.output.next().await.unwrap().unwrap());
        }
        assert!(
            seen.iter().any(
                |c| matches!(c, LogOutput::StdOut { message } if message.as_ref() == b"out\n")
            )
        );
        assert!(
            seen.iter().any(
                |c| matches!(c, LogOutput::StdErr { message } if message.as_ref() == b"err\n")
            )
        );
        // Logs, both streams.
        let logs: Vec<LogOutput> = docker
            .logs(
                "bl",
                Some(LogsOptions {
                    stdout: true,
                    stderr: true,
                    tail: "all".into(),
                    ..Default::default()
                }),
            )
            .map(|r| r.unwrap())
            .collect()
            .await;
        assert_eq!(text(&logs), "out\nerr\n");
        // Exec with output.
        let exec = docker
            .create_exec(
                "bl",
                CreateExecOptions {
                    cmd: Some(vec!["sh", "-c", "echo $FROM_SDK; exit 3"]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        match docker.start_exec(&exec.id, None).await.unwrap() {
            StartExecResults::Attached { output, .. } => {
                let out: Vec<LogOutput> = output.map(|r| r.unwrap()).collect().await;
                assert_eq!(text(&out), "yes\n");
            }
            StartExecResults::Detached => panic!("exec detached"),
        }
        let info = docker.inspect_exec(&exec.id).await.unwrap();
        assert_eq!(info.exit_code, Some(3));
        // Inspect.
        let c = docker
            .inspect_container("bl", None::<InspectContainerOptions>)
            .await
            .unwrap();
        let state = c.state.unwrap();
        assert_eq!(state.running, Some(true));
        assert!(state.pid.unwrap() > 0);
        assert_eq!(c.host_config.unwrap().memory, Some(64 << 20));
        assert_eq!(c.config.unwrap().labels.unwrap()["sdk"], "bollard");
        // One stats sample.
        let stats = docker
            .stats(
                "bl",
                Some(StatsOptions {
                    stream: false,
                    one_shot: false,
                }),
            )
            .next()
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stats.memory_stats.unwrap().limit, Some(64 << 20));
        // busybox sh execs its last command: sleep alone.
        assert_eq!(stats.pids_stats.unwrap().current, Some(1));
        // Kill, then wait for the exit.
        docker
            .kill_container(
                "bl",
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
            .unwrap();
        let waited: Vec<_> = docker
            .wait_container(
                "bl",
                Some(WaitContainerOptions {
                    condition: "not-running".into(),
                }),
            )
            .collect()
            .await;
        let code = match &waited[0] {
            Ok(r) => r.status_code,
            // bollard reports a non-zero exit as an error carrying the code.
            Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => *code,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(code, 137);
        docker
            .remove_container(
                "bl",
                Some(RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                }),
            )
            .await
            .unwrap();
        assert!(
            docker
                .inspect_container("bl", None::<InspectContainerOptions>)
                .await
                .is_err()
        );
        // The events of all that, read back.
        let until = since + 300;
        let events: Vec<String> = docker
            .events(Some(EventsOptions {
                since: Some(since.to_string()),
                until: Some(
                    (std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs()
                        + 1)
                    .min(until)
                    .to_string(),
                ),
                filters: Some(HashMap::from([("type".into(), vec!["container".into()])])),
            }))
            .map(|e| e.unwrap().action.unwrap_or_default())
            .collect()
            .await;
        for want in ["create", "start", "kill", "die", "destroy"] {
            assert!(
                events.iter().any(|a| a == want),
                "{want} missing from {events:?}"
            );
        }
    });
}
