# secretsfs %post ($1: 1 on install, 2 on upgrade). Creates the system group secretsfs-token
# (the readers of the HTTP API's token, /run/secretsfs/token) and the system user secretsfs
# (nologin, in secretsfs-token) when missing, and reloads systemd. No service is enabled or
# started: the operator picks secretsfs.service or secretsfs-http.service.
getent group secretsfs-token >/dev/null || groupadd --system secretsfs-token
if ! getent passwd secretsfs >/dev/null; then
    if getent group secretsfs >/dev/null; then own_group="--gid secretsfs"; else own_group="--user-group"; fi
    # shellcheck disable=SC2086  # own_group is one or two words
    useradd --system $own_group --groups secretsfs-token --no-create-home \
        --home-dir /nonexistent --shell /sbin/nologin --comment "secretsfs daemon" secretsfs
elif ! id -nG secretsfs | tr ' ' '\n' | grep -qx secretsfs-token; then
    usermod --append --groups secretsfs-token secretsfs
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
