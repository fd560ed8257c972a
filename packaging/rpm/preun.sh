# secretsfs %preun ($1: 0 on removal, 1 on upgrade). On removal, stop and disable the services
# (SIGTERM unmounts /secrets); an upgrade leaves running services alone.
if [ "$1" -eq 0 ] && [ -d /run/systemd/system ]; then
    systemctl --no-reload disable --now \
        secretsfs.service secretsfs-http.service secretsfs-token.service >/dev/null 2>&1 || :
fi
exit 0
