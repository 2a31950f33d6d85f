from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from starburst_executor.errors import ConfigError, ObjectNotFound, StoreAccessDenied, StoreError
from starburst_executor.storage import open_store
from starburst_executor.storage.s3 import S3Store
from starburst_executor.testing import MotoServer
from starburst_executor.testing.aws_proxy import AwsProxy

from ..aws_fixtures import aws, boto, bucket, moto_server, unique  # noqa: F401
from ..contracts.store_contract import StoreContract


class TestS3Store(StoreContract):
    @pytest.fixture
    def store(self, bucket: str) -> Iterator[S3Store]:
        s = S3Store(bucket, "starburst/sessions/" + unique("s"))
        yield s
        s.close()

    def test_url_round_trips_with_parameters(self, bucket: str) -> None:
        url = f"s3://{bucket}/p/sessions/abc?region=us-east-1&kms_key_id=alias%2Fmine"
        store = S3Store.from_url(url)
        try:
            assert store.url == url
            assert (store.bucket, store.prefix, store.region, store.kms_key_id) == (
                bucket, "p/sessions/abc", "us-east-1", "alias/mine")
            again = open_store(store.url)
            assert isinstance(again, S3Store) and again.url == url
            again.close()
        finally:
            store.close()

    def test_bad_urls(self) -> None:
        with pytest.raises(ConfigError):
            S3Store.from_url("s3:///no-bucket")
        with pytest.raises(ConfigError, match="kms_key_id"):
            S3Store.from_url("s3://b/p?colour=red")

    def test_keys_live_under_the_session_prefix(self, store: S3Store, aws: MotoServer) -> None:
        store.put("results/x.1.00000", b"r")
        listed = boto("s3", aws).list_objects_v2(Bucket=store.bucket)
        assert [o["Key"] for o in listed["Contents"]] == [store.prefix + "/results/x.1.00000"]

    def test_sse_s3_by_default(self, store: S3Store, aws: MotoServer) -> None:
        store.put("k", b"v")
        head = boto("s3", aws).head_object(Bucket=store.bucket, Key=store.prefix + "/k")
        assert head["ServerSideEncryption"] == "AES256"

    def test_sse_kms_with_a_key(self, bucket: str, aws: MotoServer) -> None:
        key_id = boto("kms", aws).create_key()["KeyMetadata"]["KeyId"]
        store = S3Store(bucket, "kms", kms_key_id=key_id)
        try:
            store.put("k", b"secret")
            head = boto("s3", aws).head_object(Bucket=bucket, Key="kms/k")
            assert head["ServerSideEncryption"] == "aws:kms"
            assert key_id in head["SSEKMSKeyId"]
            assert store.get("k") == b"secret"
        finally:
            store.close()

    def test_corruption_is_detected_on_read(self, store: S3Store, aws: MotoServer) -> None:
        store.put("k", b"original")
        # Another writer replaces the bytes but keeps our metadata.
        boto("s3", aws).put_object(
            Bucket=store.bucket, Key=store.prefix + "/k", Body=b"tampered",
            Metadata={"sha256": "0" * 64})
        with pytest.raises(StoreError, match="corrupt"):
            store.get("k")

    def test_large_object_is_uploaded_in_parts(self, store: S3Store) -> None:
        data = b"z" * (20 * 1024 * 1024)
        store.put("big", data)
        assert store.stats.requests.get("UploadPart", 0) >= 2
        assert store.stats.requests.get("CreateMultipartUpload") == 1
        assert store.get("big") == data
        assert store.stats.bytes_out == len(data) and store.stats.bytes_in == len(data)

    def test_list_paginates(self, store: S3Store, aws: MotoServer) -> None:
        client = boto("s3", aws)
        for i in range(7):
            client.put_object(Bucket=store.bucket, Key=f"{store.prefix}/p/{i:05d}", Body=b"")
        store.list_page_size = 2
        keys = store.list("p/", start_after="p/00002")
        assert keys == ["p/00003", "p/00004", "p/00005", "p/00006"]
        assert store.stats.requests["ListObjectsV2"] == 2
        store.delete_prefix("p/")
        assert store.list("p/") == []

    def test_missing_bucket_says_run_setup(self, aws: MotoServer) -> None:
        store = S3Store(unique("no-such-bucket"), "x")
        try:
            with pytest.raises(StoreError, match="starburst setup"):
                store.put("k", b"v")
            with pytest.raises(StoreError, match="starburst setup"):
                store.list("")
        finally:
            store.close()

    def test_missing_object_is_object_not_found(self, store: S3Store) -> None:
        with pytest.raises(ObjectNotFound):
            store.get("never/written")


@pytest.fixture
def proxy(aws: MotoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[AwsProxy]:
    """A counting, fault-injecting proxy in front of the moto server, used by boto3."""
    proxy = AwsProxy(aws.endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    yield proxy
    proxy.stop()


def _error(code: str, message: str = "", status: int = 400) -> Any:
    from starburst_executor.testing.aws_proxy import ProxyResponse

    body = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    return lambda r: ProxyResponse(status, body) if r.service == "s3" else None


class TestThroughProxy:
    def test_slow_down_is_retried_not_surfaced(self, bucket: str, proxy: AwsProxy) -> None:
        store = S3Store(bucket, "slow")
        try:
            proxy.inject_s3_slow_down(times=2)
            store.put("k", b"v")
            assert store.get("k") == b"v"
            assert proxy.injected[("s3", "PutObject")] == 2
            assert store.stats.requests["PutObject"] == 3  # every attempt is a request
        finally:
            store.close()

    def test_proxy_counts_operations(self, bucket: str, proxy: AwsProxy) -> None:
        store = S3Store(bucket, "count")
        try:
            store.put("a", b"1")
            store.get("a")
            store.list("")
            store.delete_prefix("")
        finally:
            store.close()
        assert proxy.requests[("s3", "PutObject")] == 1
        assert proxy.requests[("s3", "GetObject")] == 1
        assert proxy.requests[("s3", "ListObjectsV2")] == 2
        assert proxy.requests[("s3", "DeleteObjects")] == 1

    def test_access_denied_names_permission_and_resource(
            self, bucket: str, proxy: AwsProxy) -> None:
        proxy.add_hook(_error("AccessDenied", "Access Denied", 403))
        store = S3Store(bucket, "denied")
        try:
            with pytest.raises(StoreAccessDenied) as info:
                store.get("k")
            assert "s3:GetObject" in str(info.value)
            assert f"s3://{bucket}/denied/k" in str(info.value)
            with pytest.raises(StoreAccessDenied, match="s3:ListBucket"):
                store.list("")
        finally:
            store.close()


class TestErrorTranslation:
    @pytest.mark.parametrize("code", ["ExpiredToken", "RequestExpired"])
    def test_expired_credentials(self, proxy: AwsProxy, code: str) -> None:
        proxy.add_hook(_error(code, "The provided token has expired.", 400))
        store = S3Store("some-bucket", "p", max_attempts=1)
        try:
            with pytest.raises(ConfigError, match="expired.*aws sso login"):
                store.put("k", b"v")
        finally:
            store.close()

    def test_invalid_access_key(self, proxy: AwsProxy) -> None:
        proxy.add_hook(_error("InvalidAccessKeyId", "no such key", 403))
        store = S3Store("some-bucket", "p", max_attempts=1)
        try:
            with pytest.raises(ConfigError, match="aws configure"):
                store.get("k")
        finally:
            store.close()

    def test_kms_key_problems_name_the_key_permissions(self, proxy: AwsProxy) -> None:
        proxy.add_hook(_error("KMS.DisabledException", "key is disabled", 400))
        store = S3Store("some-bucket", "p", kms_key_id="alias/off", max_attempts=1)
        try:
            with pytest.raises(StoreAccessDenied, match="kms:GenerateDataKey"):
                store.put("k", b"v")
        finally:
            store.close()

    def test_persistent_slow_down_is_a_store_error_not_botocore(self, proxy: AwsProxy,
                                                                bucket: str) -> None:
        from starburst_executor import _aws

        proxy.inject_s3_slow_down(times=100)
        store = S3Store(bucket, "p", max_attempts=2)
        try:
            with pytest.raises(StoreError, match="lower max_workers") as info:
                store.list("")
            assert not isinstance(info.value, ObjectNotFound)
            assert _aws.MAX_ATTEMPTS > 2
        finally:
            store.close()


def test_no_credentials_says_how_to_configure(monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Any) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    store = S3Store("some-bucket", "p", region="us-east-1", max_attempts=1)
    try:
        with pytest.raises(ConfigError, match="aws configure"):
            store.get("k")
    finally:
        store.close()


def test_unreachable_endpoint_is_a_store_error(aws: MotoServer,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    store = S3Store("some-bucket", "p", region="us-east-1", max_attempts=1)
    try:
        with pytest.raises(StoreError, match="cannot reach AWS"):
            store.get("k")
    finally:
        store.close()
