# secretsfs %postun ($1: 0 on removal, 1 on upgrade). systemd forgets the removed units. The
# secretsfs user and the secretsfs-token group are kept (files may belong to them).
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
exit 0
