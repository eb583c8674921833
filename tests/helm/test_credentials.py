"""Cloudflare credentials reach the container only as files from Secrets, never in plain text."""

from __future__ import annotations

import base64

from tests.support.helm import (
    GLOBAL_KEY,
    TOKEN,
    WITH_TOKEN,
    Release,
    credential_source,
    scenario_values,
)


def _assert_secret_value_is_nowhere_in_plain_text(release: Release, secret: str) -> None:
    for path, text in release.manifests.items():
        assert secret not in text, f"the credential appears in plain text in {path}"
    for var in release.container["env"]:
        assert var.get("value") != secret


def _assert_only_in_the_rendered_secret(release, variable: str, value: str) -> None:
    """The file `variable` names comes from the chart's Secret, which holds `value`, and the
    value is nowhere else in plain text."""
    secret_name, key = credential_source(release, release.env[variable]["value"])
    secret = release.one("Secret")
    assert secret["metadata"]["name"] == secret_name
    assert base64.b64decode(secret["data"][key]).decode() == value
    _assert_secret_value_is_nowhere_in_plain_text(release, value)


def test_inline_token_reaches_the_container_only_as_a_secret_file(render):
    release = render(WITH_TOKEN)
    assert set(release.env) == {"CLOUDFLARE_API_TOKEN_FILE"}
    _assert_only_in_the_rendered_secret(release, "CLOUDFLARE_API_TOKEN_FILE", TOKEN)


def test_existing_secret_with_a_custom_key_is_mounted_without_rendering_a_secret(render):
    release = render({"cloudflare": {"existingSecret": {"name": "cf-creds", "key": "oauth-read"}}})
    assert release.all("Secret") == []
    file_path = release.env["CLOUDFLARE_API_TOKEN_FILE"]["value"]
    assert credential_source(release, file_path) == ("cf-creds", "oauth-read")


def test_legacy_inline_key_mounts_the_key_file_and_sets_the_email(render):
    release = render({"cloudflare": {"apiEmail": "ops@example.com", "apiKey": GLOBAL_KEY}})
    assert set(release.env) == {"CLOUDFLARE_API_EMAIL", "CLOUDFLARE_API_KEY_FILE"}
    assert release.env["CLOUDFLARE_API_EMAIL"]["value"] == "ops@example.com"
    _assert_only_in_the_rendered_secret(release, "CLOUDFLARE_API_KEY_FILE", GLOBAL_KEY)


def test_legacy_key_from_an_existing_secret(render):
    release = render(
        {
            "cloudflare": {
                "apiEmail": "ops@example.com",
                "existingSecret": {"name": "cf-global", "apiKeyKey": "global-key"},
            }
        }
    )
    assert release.all("Secret") == []
    assert "CLOUDFLARE_API_TOKEN_FILE" not in release.env
    file_path = release.env["CLOUDFLARE_API_KEY_FILE"]["value"]
    assert credential_source(release, file_path) == ("cf-global", "global-key")


def test_pods_roll_when_the_inline_token_changes(render):
    def checksum(token: str) -> str:
        release = render({"cloudflare": {"apiToken": token}})
        annotations = release.one("Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/secret"])

    assert checksum(TOKEN) != checksum(TOKEN + "-rotated")


def test_notes_explain_port_forward_and_warn_only_about_inline_credentials(render):
    inline = render(WITH_TOKEN)
    service = inline.one("Service")["metadata"]["name"]
    assert f"port-forward service/{service} 9878:9878" in inline.notes
    assert "/metrics" in inline.notes
    assert "WARNING" in inline.notes
    assert "cloudflare.apiToken" in inline.notes
    assert "WARNING" in render({"cloudflare": {"apiEmail": "a@example.com", "apiKey": "k"}}).notes
    assert "WARNING" not in render(scenario_values("existing-secret-values.yaml")).notes
