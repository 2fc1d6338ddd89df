#!/bin/bash
# Bootstrap of a vault parent instance (spec 7.4). Any failure signals the Auto Scaling
# group, so a broken instance fails the deployment instead of joining the target group.
set -euo pipefail
exec > >(tee -a /var/log/user-data.log) 2>&1

REGION="{{region}}"
signal() {
  /opt/aws/bin/cfn-signal --exit-code "$1" --stack "{{stack_name}}" --resource "{{asg_logical_id}}" --region "$REGION" || true
}

dnf install -y aws-cfn-bootstrap
trap 'signal 1' ERR

dnf install -y aws-nitro-enclaves-cli aws-nitro-enclaves-acm nginx python3.11 awscli-2 unzip

install -d -m 0755 /etc/nitro_enclaves /etc/pki/tls/openssl.d /etc/systemd/system/nitro-enclaves-acm.service.d
cat > /etc/nitro_enclaves/allocator.yaml <<'VAULT_EOF'
{{allocator_yaml}}
VAULT_EOF
cat > /etc/nitro_enclaves/vsock-proxy.yaml <<'VAULT_EOF'
{{vsock_proxy_yaml}}
VAULT_EOF
cat > /etc/nitro_enclaves/acm.yaml <<'VAULT_EOF'
{{acm_yaml}}
VAULT_EOF
cat > /etc/systemd/system/nitro-enclaves-acm.service.d/proxy.conf <<'VAULT_EOF'
{{acm_proxy_conf}}
VAULT_EOF
cat > /etc/pki/tls/openssl.d/openssl-acm.cnf <<'VAULT_EOF'
{{openssl_acm_cnf}}
VAULT_EOF
cat > /etc/nginx/nginx.conf <<'VAULT_EOF'
{{nginx_conf}}
VAULT_EOF
cat > /etc/systemd/system/vault-parent.service <<'VAULT_EOF'
{{parent_unit}}
VAULT_EOF

usermod -aG ne ec2-user

# The EIF and the parent's wheels: one zip, from the CDK asset or the pipeline's bucket.
ARTIFACTS=/opt/vault-artifacts
rm -rf "$ARTIFACTS" && install -d -m 0755 "$ARTIFACTS"
aws s3 cp "s3://{{artifact_bucket}}/{{artifact_key}}" /tmp/vault-artifacts.zip --region "$REGION" --only-show-errors
unzip -q /tmp/vault-artifacts.zip -d "$ARTIFACTS"
rm -f /tmp/vault-artifacts.zip
install -o ec2-user -g ec2-user -m 0444 "$ARTIFACTS/enclave-vault.eif" "{{eif_path}}"

python3.11 -m venv /opt/vault-parent
/opt/vault-parent/bin/pip install --quiet --no-index --find-links "$ARTIFACTS/wheels" "nitro-vault[parent]"

systemctl daemon-reload
systemctl enable --now nitro-enclaves-allocator.service
systemctl enable --now nitro-enclaves-vsock-proxy.service
systemctl enable --now nitro-enclaves-acm.service
systemctl enable --now vault-parent.service

signal 0
