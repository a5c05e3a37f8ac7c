//! One command in one container, through the exec API (the user's kubeconfig and credentials):
//! its stdout streamed to a sink, its stderr kept, and what ended it.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::AttachParams;
use kube::Api;
use tokio::io::AsyncReadExt;

use super::RemoteError;

/// A container of a pod.
#[derive(Clone)]
pub struct Target {
    pub pods: Api<Pod>,
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{} container {}",
            self.namespace, self.pod, self.container
        )
    }
}

/// How the remote command ended.
#[derive(Debug)]
pub struct Ended {
    pub stderr: String,
    /// The exec API's verdict: `None` when the stream closed without one (the container or the
    /// connection went away).
    pub status: Option<Status>,
}

impl Ended {
    pub fn succeeded(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.status.as_deref() == Some("Success"))
    }

    /// The command's exit code, when the exec API gave one (`details.causes`, reason
    /// `ExitCode`; 0 on success).
    pub fn exit_code(&self) -> Option<i32> {
        let status = self.status.as_ref()?;
        if self.succeeded() {
            return Some(0);
        }
        let causes = status.details.as_ref()?.causes.as_ref()?;
        let cause = causes
            .iter()
            .find(|c| c.reason.as_deref() == Some("ExitCode"))?;
        cause.message.as_deref()?.parse().ok()
    }

    /// Whether the command may have died with its container: no status, or killed by a signal.
    pub fn killed(&self) -> bool {
        self.status.is_none() || self.exit_code().is_none_or(|code| code >= 128)
    }

    /// The remote stderr's last line, or the exec API's message.
    pub fn why(&self) -> String {
        // Not the JSON lines of the protocol (agent::dumps): the error is in the text.
        let last =
            (self.stderr.lines().rev()).find(|l| !l.trim().is_empty() && !l.starts_with('{'));
        match (last, &self.status) {
            (Some(line), _) => line.trim().to_string(),
            (None, Some(status)) => status.message.clone().unwrap_or_default(),
            (None, None) => "the stream closed without an exit status".into(),
        }
    }
}

/// Runs `command` and keeps its whole stdout (small answers: listings, reports).
pub async fn collect(target: &Target, command: &[&str]) -> Result<(Vec<u8>, Ended), RemoteError> {
    let mut out = Vec::new();
    let ended = run(target, command, |chunk| {
        out.extend_from_slice(chunk);
        Ok(())
    })
    .await?;
    Ok((out, ended))
}

/// Runs `command` in `target`; each chunk of its stdout goes to `sink` (an error there stops
/// the command). Stderr is collected up to 1 MiB.
pub async fn run(
    target: &Target,
    command: &[&str],
    mut sink: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<Ended, RemoteError> {
    let params = AttachParams::default()
        .container(target.container.clone())
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut attached = target
        .pods
        .exec(&target.pod, command.to_vec(), &params)
        .await
        .map_err(|e| RemoteError::Api {
            what: format!("exec into {target}"),
            source: e,
        })?;
    let mut stdout = attached.stdout().expect("stdout was asked for");
    let mut stderr = attached.stderr().expect("stderr was asked for");
    let status = attached.take_status().expect("the status is taken once");
    let read_stdout = async {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = stdout
                .read(&mut buf)
                .await
                .map_err(|e| RemoteError::Stream(e.to_string()))?;
            if n == 0 {
                return Ok(());
            }
            sink(&buf[..n]).map_err(RemoteError::Sink)?;
        }
    };
    let read_stderr = async {
        let mut text = Vec::new();
        let _ = (&mut stderr).take(1 << 20).read_to_end(&mut text).await;
        String::from_utf8_lossy(&text).into_owned()
    };
    let (out, stderr) = tokio::join!(read_stdout, read_stderr);
    if let Err(e) = out {
        attached.abort();
        return Err(e);
    }
    // The status comes with the end of the streams; a connection that closed has none.
    let status = tokio::time::timeout(std::time::Duration::from_secs(5), status)
        .await
        .ok()
        .flatten();
    let _ = attached.join().await;
    Ok(Ended { stderr, status })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ended(status: Option<serde_json::Value>, stderr: &str) -> Ended {
        Ended {
            stderr: stderr.into(),
            status: status.map(|s| serde_json::from_value(s).unwrap()),
        }
    }

    #[test]
    fn the_exit_code_says_whether_the_command_was_killed() {
        let failure = |code: &str| {
            json!({"status": "Failure", "message": format!("command terminated with exit code {code}"),
                   "reason": "NonZeroExitCode",
                   "details": {"causes": [{"reason": "ExitCode", "message": code}]}})
        };
        let e = ended(Some(json!({"status": "Success"})), "");
        assert_eq!(
            (e.succeeded(), e.exit_code(), e.killed()),
            (true, Some(0), false)
        );
        let e = ended(
            Some(failure("1")),
            "{\"sending\":{}}\nerror: /dumps/x: No such file\n",
        );
        assert_eq!((e.exit_code(), e.killed()), (Some(1), false));
        assert_eq!(e.why(), "error: /dumps/x: No such file");
        let e = ended(Some(failure("137")), "");
        assert_eq!((e.exit_code(), e.killed()), (Some(137), true));
        assert_eq!(e.why(), "command terminated with exit code 137");
        let e = ended(None, "");
        assert!(e.killed());
        assert_eq!(e.why(), "the stream closed without an exit status");
    }
}
