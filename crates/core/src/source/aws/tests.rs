//! FIPS and dual-stack settings reach the client: checked through the SDK's own endpoint
//! resolver (the SDK refuses FIPS with a custom endpoint, so a local server cannot show it).

use std::sync::{Arc, Mutex};

use aws_sdk_secretsmanager::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;

use aws_credential_types::provider::SharedCredentialsProvider;

use super::{AwsOptions, AwsSource};
use crate::error::ErrorKind;

fn options(region: &str, fips: Option<bool>, dual_stack: Option<bool>) -> AwsOptions {
    AwsOptions {
        region: Some(region.into()),
        credentials: Some(SharedCredentialsProvider::new(
            aws_credential_types::Credentials::new("x", "x", None, None, "test"),
        )),
        use_fips: fips,
        use_dual_stack: dual_stack,
        ..AwsOptions::default()
    }
}

/// Records where a request is about to go, and stops it there.
#[derive(Debug, Clone, Default)]
struct Destination(Arc<Mutex<Option<String>>>);

impl Intercept for Destination {
    fn name(&self) -> &'static str {
        "record-the-destination"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let uri = context.request().uri().to_owned();
        *self.0.lock().unwrap() = Some(uri);
        Err("stopped before sending".into())
    }
}

/// Where the client built from `options` sends its calls, as the SDK resolves it.
async fn endpoint_of(options: &AwsOptions) -> String {
    let source = AwsSource::connect(options).await.unwrap();
    let destination = Destination::default();
    let config = source
        .client
        .config()
        .to_builder()
        .interceptor(destination.clone())
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(config);
    let _ = client.list_secrets().send().await;
    let uri = destination
        .0
        .lock()
        .unwrap()
        .clone()
        .expect("a request was made");
    uri.trim_end_matches('/').to_owned()
}

#[tokio::test]
async fn fips_and_dual_stack_choose_the_regions_endpoints() {
    // Secrets Manager's standard endpoints in the aws partition are dual-stack already (the
    // SDK's own endpoint tests say so), so the dual-stack switch shows in the China partition.
    let cases = [
        (
            "us-east-1",
            None,
            None,
            "https://secretsmanager.us-east-1.amazonaws.com",
        ),
        (
            "us-east-1",
            Some(true),
            None,
            "https://secretsmanager-fips.us-east-1.amazonaws.com",
        ),
        (
            "us-east-1",
            Some(false),
            Some(false),
            "https://secretsmanager.us-east-1.amazonaws.com",
        ),
        (
            "cn-north-1",
            Some(true),
            Some(false),
            "https://secretsmanager-fips.cn-north-1.amazonaws.com.cn",
        ),
        (
            "cn-north-1",
            Some(true),
            Some(true),
            "https://secretsmanager-fips.cn-north-1.api.amazonwebservices.com.cn",
        ),
    ];
    for (region, fips, dual_stack, expected) in cases {
        let endpoint = endpoint_of(&options(region, fips, dual_stack)).await;
        assert_eq!(
            endpoint, expected,
            "{region} fips {fips:?} dual-stack {dual_stack:?}"
        );
    }
}

#[tokio::test]
async fn fips_with_a_custom_endpoint_is_a_one_line_configuration_error() {
    let mut both = options("us-east-1", Some(true), None);
    both.endpoint_url = Some("http://127.0.0.1:1".into());
    let err = AwsSource::connect(&both).await.err().expect("refused");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("use_fips_endpoint") && !err.message().contains('\n'));
}
