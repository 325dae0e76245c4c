"""Resources: the vendor (Crypto Lake or a stand-in in its layout) and our lake root."""


from pathlib import Path

import dagster as dg

from rlx_assets.lib.lake import Lake
from rlx_assets.lib.retry import Backoff
from rlx_assets.lib.vendor import CREDENTIAL_VARIABLES, VendorCredentialsMissing, VendorSource
from rlx_assets.lib.vendor_local import LocalSource
from rlx_assets.lib.vendor_s3 import S3Source
from rlx_assets.settings import Settings, Source


def credential_env_vars(settings: Settings) -> dict[str, dg.EnvVar]:
    """EnvVars for the credential variables that are set; their values are not read here."""
    return {field: dg.EnvVar(name) for field, name in settings.credential_variables.items()}


class CryptoLakeResource(dg.ConfigurableResource):
    """Crypto Lake through `lakeapi` + boto3, its sample bucket, an S3 mirror or a directory."""

    source: str
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = None
    aws_session_token: str | None = None
    region_name: str = "eu-west-1"
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    cache_dir: str | None = None  # where lakeapi caches listings; default ~/.cache/rlx_assets

    def backoff(self) -> Backoff:
        return Backoff(attempts=self.max_attempts, base_seconds=self.backoff_seconds)

    def _session(self):
        import boto3

        return boto3.Session(
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            region_name=self.region_name,
        )

    def vendor(self) -> VendorSource:
        source = Source.parse(self.source)
        if source.kind == "local":
            return LocalSource(source.path)
        if source.needs_credentials and self._session().get_credentials() is None:
            raise VendorCredentialsMissing(
                f"CRYPTO_LAKE_SOURCE=lakeapi needs Crypto Lake credentials; set "
                f"{CREDENTIAL_VARIABLES} in the environment or .env."
            )
        return S3Source(
            bucket=source.bucket,
            prefix=source.prefix,
            session_factory=self._session,
            listing="lakeapi" if source.kind == "lakeapi" else "s3",
            anonymous=source.kind == "sample",
            cache_dir=Path(self.cache_dir) if self.cache_dir else None,
            max_attempts=self.max_attempts,
        )


class LakeResource(dg.ConfigurableResource):
    """Where our zones live (RLX_LAKE_ROOT), the work directory of an s3:// lake, its
    S3-compatible endpoint and the DuckDB catalog file (see `Settings.lake`)."""

    root: str
    scratch_dir: str | None = None
    endpoint_url: str | None = None
    catalog_path: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> "LakeResource":
        return cls(root=settings.lake_root, scratch_dir=str(settings.scratch_dir),
                   endpoint_url=settings.lake_endpoint_url,
                   catalog_path=str(settings.catalog_path) if settings.catalog_path else None)

    def lake(self) -> Lake:
        return Lake.at(self.root, Path(self.scratch_dir) if self.scratch_dir else None,
                       self.endpoint_url, Path(self.catalog_path) if self.catalog_path else None)
