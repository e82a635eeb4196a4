use std::{path::Path, time::Duration};

use bollard::models::{ContainerCreateBody, Mount};

use super::*;
use crate::{
    agent::{AgentSpec, PromptVia},
    config::Config,
    prompt,
    workspace::{AGENT_OUT_DIR, SUMMARY_FILE},
};

fn test_job<'a>(agent: &'a AgentSpec, watchdog: Option<Watchdog<'a>>) -> ContainerJob<'a> {
    ContainerJob {
        job_id: "J",
        attempt: 2,
        worker_id: "W",
        namespace: "agentq",
        agent,
        prompt: "P",
        repo_dir: Path::new("/ws/repo"),
        input_dir: Path::new("/ws/.meta/input"),
        out_dir: Some(Path::new("/ws/.meta/agent-out")),
        user: "1000:1000".into(),
        watchdog,
    }
}

#[test]
fn spec_follows_the_seed_and_hardens() {
    let cfg = Config::default();
    let agent = AgentSpec::parse("claude").unwrap();
    let job = test_job(&agent, None);
    let env = |k: &str| (k == "ANTHROPIC_API_KEY").then(|| "sk".to_string());
    let body = agent_container(&cfg, &job, env);
    assert_eq!(body.image.as_deref(), Some("core-dev"));
    let cmd = body.cmd.unwrap();
    assert_eq!(cmd[0], "claude");
    assert_eq!(cmd[1..3], ["-p".to_string(), "P".to_string()]);
    let env = body.env.unwrap();
    assert!(env.contains(&"ANTHROPIC_API_KEY=sk".to_string()));
    assert!(
        !env.iter().any(|e| e.starts_with("OPENAI_API_KEY")),
        "unset keys are not passed"
    );
    assert!(env.contains(&"CI=true".to_string()));
    let labels = body.labels.unwrap();
    assert_eq!(labels[LABEL_JOB], "J");
    assert_eq!(labels[LABEL_ATTEMPT], "2");
    let hc = body.host_config.unwrap();
    assert_eq!(hc.cap_drop.unwrap(), ["ALL"]);
    let mounts = hc.mounts.unwrap();
    assert_eq!(mounts[0].target.as_deref(), Some("/workspace"));
    assert_eq!(mounts[1].target.as_deref(), Some("/agentq"));
    assert_eq!(
        mounts[1].read_only,
        Some(true),
        "the agent cannot change its input"
    );
    assert!(
        !mounts
            .iter()
            .any(|m| m.source.as_deref() == Some("/ws/.meta")),
        "the worker's own files are never mounted"
    );
    assert_eq!(hc.network_mode.as_deref(), Some("agentq-agents"));
    assert_eq!(hc.extra_hosts, None, "no name for the host unless asked");
    assert_eq!(body.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        body.entrypoint,
        Some(vec![]),
        "the image's entrypoint is not used"
    );
    assert!(
        !mounts
            .iter()
            .any(|m| m.target.as_deref() == Some(WATCHDOG_MOUNT)
                || m.target.as_deref() == Some(BEAT_MOUNT)),
        "no watchdog unless asked"
    );
    let local = AgentSpec::parse("local").unwrap();
    let body = agent_container(
        &cfg,
        &ContainerJob {
            agent: &local,
            ..job.clone()
        },
        |_| None,
    );
    assert!(
        body.host_config.unwrap().extra_hosts.is_some(),
        "local needs Ollama on the host"
    );
    let export = export_container(&cfg, &job, "abc");
    let hc = export.host_config.unwrap();
    assert_eq!(hc.network_mode.as_deref(), Some("none"));
    let m = hc.mounts.unwrap();
    assert_eq!((m.len(), m[0].read_only), (1, Some(true)));
    assert_eq!(export.cmd.unwrap().last().map(String::as_str), Some("abc"));
    assert!(!mounts
        .iter()
        .any(|m| m.source.as_deref().unwrap_or("").contains("docker.sock")));
}

#[test]
fn watchdog_wraps_every_container() {
    let cfg = Config::default();
    let agent = AgentSpec::parse("codex").unwrap();
    let wd = Watchdog {
        bin_dir: Path::new("/run/agentq/bin"),
        beat_dir: Path::new("/run/agentq/beat/J-2-agent"),
        stale_after: Duration::from_secs(90),
    };
    let job = test_job(&agent, Some(wd));
    let entrypoint: Vec<String> = [
        "/agentq-bin/agentq-watchdog",
        "--beat",
        "/agentq-beat/beat",
        "--stale-ms",
        "90000",
        "--",
    ]
    .map(String::from)
    .to_vec();
    let watchdog_mounts = |mounts: &[Mount]| {
        let find = |target: &str| {
            mounts
                .iter()
                .find(|m| m.target.as_deref() == Some(target))
                .map(|m| (m.source.clone().unwrap(), m.read_only))
        };
        assert_eq!(
            find(WATCHDOG_MOUNT),
            Some(("/run/agentq/bin".to_string(), Some(true)))
        );
        assert_eq!(
            find(BEAT_MOUNT),
            Some(("/run/agentq/beat/J-2-agent".to_string(), Some(true)))
        );
    };

    let agent_body = agent_container(&cfg, &job, |_| None);
    let qa_body = qa_container(&cfg, &job, vec!["go".into(), "test".into()]);
    let export_body = export_container(&cfg, &job, "abc");
    // codex reads its prompt on stdin: the watchdog opens the file for it;
    // after the agent, the watchdog runs the worker's plan (issue 34).
    let mut agent_entrypoint = entrypoint.clone();
    agent_entrypoint.splice(
        5..5,
        [
            "--after".to_string(),
            "/agentq-beat/after".to_string(),
            "--stdin-from".to_string(),
            "/agentq/prompt.md".to_string(),
        ],
    );
    assert_eq!(agent_body.entrypoint.as_ref(), Some(&agent_entrypoint));
    assert_eq!(agent_body.cmd.as_ref().unwrap().last().unwrap(), "-");
    let leftovers_body = leftovers_container(&cfg, &job);
    for (body, first) in [
        (&agent_body, "codex"),
        (&qa_body, "go"),
        (&export_body, "sh"),
        (&leftovers_body, "sh"),
    ] {
        if first != "codex" {
            assert_eq!(body.entrypoint.as_ref(), Some(&entrypoint));
        }
        assert_eq!(
            body.cmd.as_ref().unwrap()[0],
            first,
            "the command stays the cmd"
        );
        let hc = body.host_config.as_ref().unwrap();
        assert_eq!(
            hc.init,
            Some(false),
            "the watchdog is PID 1, out of the agent's reach"
        );
        watchdog_mounts(hc.mounts.as_ref().unwrap());
    }
    let export_mounts = export_body.host_config.unwrap().mounts.unwrap();
    assert_eq!(
        export_mounts.len(),
        3,
        "the repository and the watchdog's two"
    );
    assert_eq!(export_mounts[0].target.as_deref(), Some("/workspace"));
    assert_eq!(export_mounts[0].read_only, Some(true));

    let short = ContainerJob {
        watchdog: Some(Watchdog {
            stale_after: Duration::from_micros(10),
            ..wd
        }),
        ..job.clone()
    };
    let ep = qa_container(&cfg, &short, vec!["true".into()])
        .entrypoint
        .unwrap();
    assert_eq!(ep[4], "1", "never 0 ms");
}

#[test]
fn only_the_agent_gets_the_output_directory_and_the_summary_file() {
    let cfg = Config::default();
    let agent = AgentSpec::parse("codex").unwrap();
    let job = test_job(&agent, None);
    let out_mount = |body: &ContainerCreateBody| {
        body.host_config
            .as_ref()
            .and_then(|hc| hc.mounts.as_ref())
            .and_then(|m| {
                m.iter()
                    .find(|m| m.target.as_deref() == Some(AGENT_OUT_DIR))
            })
            .map(|m| (m.source.clone().unwrap_or_default(), m.read_only))
    };
    let body = agent_container(&cfg, &job, |_| None);
    assert_eq!(
        out_mount(&body),
        Some(("/ws/.meta/agent-out".to_string(), Some(false)))
    );
    assert!(body
        .env
        .as_ref()
        .unwrap()
        .contains(&format!("AGENTQ_SUMMARY_FILE={SUMMARY_FILE}")));
    let cmd = body.cmd.unwrap();
    let o = cmd.iter().position(|a| a == "-o").unwrap();
    assert_eq!(cmd[o + 1], SUMMARY_FILE, "codex's -o is the summary file");
    for other in [
        qa_container(&cfg, &job, vec!["true".into()]),
        export_container(&cfg, &job, "abc"),
        leftovers_container(&cfg, &job),
    ] {
        assert_eq!(out_mount(&other), None);
        assert!(!other
            .env
            .unwrap_or_default()
            .iter()
            .any(|e| e.starts_with("AGENTQ_SUMMARY_FILE=")));
    }
}

#[test]
fn home_is_a_scratch_tmpfs_of_the_agent_and_long_prompts_are_cut_for_arguments() {
    let cfg = Config::default();
    let gemini = AgentSpec::parse("gemini").unwrap();
    let big = format!("## TASK\n\nx\n\n## PLAN\n\n{}\n", "p".repeat(200 * 1024));
    let job = ContainerJob {
        prompt: &big,
        ..test_job(&gemini, None)
    };
    let body = agent_container(&cfg, &job, |_| None);
    assert!(body
        .env
        .as_ref()
        .unwrap()
        .contains(&format!("HOME={AGENT_HOME}")));
    let tmpfs = body.host_config.as_ref().unwrap().tmpfs.clone().unwrap();
    assert!(
        tmpfs[AGENT_HOME].contains("mode=0700")
            && tmpfs[AGENT_HOME].ends_with(",uid=1000,gid=1000"),
        "{tmpfs:?}"
    );
    let arg = &body.cmd.unwrap()[2];
    assert!(arg.len() <= prompt::ARGUMENT_PROMPT_MAX_BYTES && arg.contains("## PROMPT CUT"));
    assert!(prompt_cut(&job).is_some());
    // Without a watchdog to open the file, claude takes it as an argument.
    let claude = AgentSpec::parse("claude").unwrap();
    let job = test_job(&claude, None);
    assert_eq!(prompt_via(&job), PromptVia::Argument);
    assert_eq!(agent_container(&cfg, &job, |_| None).cmd.unwrap()[2], "P");
}

#[test]
fn a_configured_pool_gets_its_command_env_home_dirs_and_home() {
    let home = tempfile::tempdir().unwrap();
    for d in [".aider", ".codex", ".claude"] {
        std::fs::create_dir(home.path().join(d)).unwrap();
    }
    let mut cfg = Config::from_toml(&format!(
        r#"
[docker]
agent_home = "{}"
[agents.aider]
image = "agentq-aider"
command = ["aider", "--message={{prompt}}", "--model", "{{model}}", "--out", "{{summary_file}}"]
default_model = "openai/stub"
env = {{ OPENAI_BASE_URL = "http://host.docker.internal:8000/v1", OLLAMA_HOST = "http://o" }}
home_dirs = [".aider"]
writable_home = false
host_gateway = true
[agents.claude]
home_dirs = [".aider"]
"#,
        home.path().display()
    ))
    .unwrap();
    let aider = cfg.agent_table().parse("aider").unwrap();
    let big = format!("## TASK\n\nx\n\n## PLAN\n\n{}\n", "p".repeat(200 * 1024));
    let job = ContainerJob {
        prompt: &big,
        ..test_job(&aider, None)
    };
    let body = agent_container(&cfg, &job, |_| None);
    assert_eq!(body.image.as_deref(), Some("agentq-aider"));
    let cmd = body.cmd.clone().unwrap();
    assert_eq!(cmd[0], "aider");
    assert!(cmd[1].starts_with("--message=## TASK") && cmd[1].contains("## PROMPT CUT"));
    assert!(cmd[1].len() <= prompt::ARGUMENT_PROMPT_MAX_BYTES + "--message=".len());
    assert_eq!(
        cmd[2..],
        [
            "--model",
            "openai/stub",
            "--out",
            crate::workspace::SUMMARY_FILE
        ]
    );
    assert!(prompt_cut(&job).is_some(), "the record notes the cut");
    let env = body.env.clone().unwrap();
    assert!(env.contains(&"OPENAI_BASE_URL=http://host.docker.internal:8000/v1".to_string()));
    assert!(env.contains(&"OLLAMA_HOST=http://o".to_string()));
    assert_eq!(
        env.iter().filter(|e| e.starts_with("OLLAMA_HOST=")).count(),
        1
    );
    let hc = body.host_config.unwrap();
    let targets: Vec<_> = hc
        .mounts
        .unwrap()
        .into_iter()
        .filter_map(|m| m.target)
        .collect();
    assert!(targets.contains(&format!("{AGENT_HOME}/.aider")));
    assert!(
        !targets.contains(&format!("{AGENT_HOME}/.codex")),
        "a configured command gets its own dirs only"
    );
    let tmpfs = hc.tmpfs.unwrap();
    assert!(
        tmpfs[AGENT_HOME].contains("mode=0555,uid=0,gid=0"),
        "{tmpfs:?}"
    );
    assert!(hc.extra_hosts.is_some(), "the pool's host_gateway");
    // Fixed values are the agent's only.
    for body in [
        qa_container(&cfg, &job, vec!["true".into()]),
        export_container(&cfg, &job, "abc"),
        leftovers_container(&cfg, &job),
    ] {
        let env = body.env.unwrap();
        assert!(
            !env.iter().any(|e| e.starts_with("OPENAI_BASE_URL")),
            "{env:?}"
        );
        let hc = body.host_config.unwrap();
        let mounts = hc.mounts.unwrap_or_default();
        assert!(!mounts
            .iter()
            .any(|m| m.target.as_deref() == Some("/agentq-home/.aider")));
        // `writable_home = false` is the agent's only: QA's tools write
        // their caches in HOME.
        let tmpfs = hc.tmpfs.unwrap();
        assert!(tmpfs[AGENT_HOME].contains("mode=0700"), "{tmpfs:?}");
    }
    // A built-in pool keeps its directories and gets the extra ones.
    let claude = cfg.agent_table().parse("claude").unwrap();
    let body = agent_container(&cfg, &test_job(&claude, None), |_| None);
    let targets: Vec<_> = body
        .host_config
        .unwrap()
        .mounts
        .unwrap()
        .into_iter()
        .filter_map(|m| m.target)
        .collect();
    for d in [".codex", ".claude", ".aider"] {
        assert!(
            targets.contains(&format!("{AGENT_HOME}/{d}")),
            "{d}: {targets:?}"
        );
    }
    cfg.agents.get_mut("aider").unwrap().writable_home = None;
    let body = agent_container(&cfg, &job, |_| None);
    assert!(body.host_config.unwrap().tmpfs.unwrap()[AGENT_HOME].contains("mode=0700"));
}
