use std::process::ExitCode;

use kube::CustomResourceExt;
use shopstream_common::{cli, logging};
use shopstream_model::Pipeline;
use shopstream_operator::cli::{Cli, Command};
use shopstream_operator::controller::{self, RunSettings};

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
                leader_election: args
                    .leader_election
                    .then_some((args.lease_namespace, args.lease_name)),
                lease_duration: args.lease_duration,
                identity,
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start the async runtime");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(controller::run(settings)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{}", shopstream_common::error::chain(&e));
                    ExitCode::FAILURE
                }
            }
        }
    }
}
