//! Command-line parsing shared by the binaries.

use clap::Parser;
use clap::error::ErrorKind;
use shopstream_model::SchemaName;

/// `--schema`: a warehouse schema name, validated as the CRD does.
pub fn parse_schema(s: &str) -> Result<SchemaName, String> {
    SchemaName::parse(s).map_err(|e| e.to_string())
}

/// Parse `std::env::args` (and `SHOPSTREAM_*` env vars). On a bad flag or
/// value, print the error *and* the usage line, then exit with status 2.
pub fn parse_or_exit<T: Parser>() -> T {
    match T::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => e.exit(),
        Err(e) => {
            let rendered = e.render().to_string();
            eprint!("{rendered}");
            if !rendered.contains("Usage:") {
                let mut cmd = T::command();
                eprintln!("\n{}", cmd.render_usage());
            }
            std::process::exit(2);
        }
    }
}

/// Run a binary's async `work` on a multi-threaded runtime with `threads`
/// workers (`None`: one per core) and turn the outcome into the exit code;
/// an error is logged with its whole cause chain.
pub fn block_on<E>(
    threads: Option<usize>,
    work: impl std::future::Future<Output = Result<std::process::ExitCode, E>>,
) -> std::process::ExitCode
where
    E: std::error::Error + 'static,
{
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{}", crate::error::chain(&e));
            std::process::ExitCode::FAILURE
        }
    }
}
