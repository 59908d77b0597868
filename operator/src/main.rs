use std::process::ExitCode;

use kube::CustomResourceExt;
use shopstream_common::{cli, logging};
use shopstream_model::Pipeline;
use shopstream_operator::cli::{Cli, Command};
use shopstream_operator::controller::{self, RunSettings};
use shopstream_operator::local::{self, LocalSettings};

fn main() -> ExitCode {
    let cli: Cli = cli::parse_or_exit();
    logging::init(cli.log_format);
    match cli.command {
        Command::Crd => match serde_yaml::to_string(&Pipeline::crd()) {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot render the CRD");
                ExitCode::FAILURE
            }
        },
        Command::Local(args) => {
            let settings = LocalSettings::from(args);
            cli::block_on(None, async move {
                let outcome = local::run(settings).await?;
                Ok::<_, local::LocalError>(if outcome.audit.matches() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                })
            })
        }
        Command::Run(args) => {
            let identity = std::env::var("POD_NAME")
                .or_else(|_| std::env::var("HOSTNAME"))
                .unwrap_or_else(|_| format!("shopstream-operator-{}", std::process::id()));
            let settings = RunSettings {
                metrics_addr: args.metrics_addr,
                watch_namespace: args.watch_namespace,
                default_image: args.default_image,
                concurrency: args.concurrency,
                scale_interval: args.scale_interval,
                kafka_timeout: args.kafka_timeout,
                cleanup_timeout: args.cleanup_timeout,
                leader_election: args
                    .leader_election
                    .then_some((args.lease_namespace, args.lease_name)),
                lease_duration: args.lease_duration,
                identity,
            };
            cli::block_on(None, async move {
                controller::run(settings).await?;
                Ok::<_, controller::RunError>(ExitCode::SUCCESS)
            })
        }
    }
}
