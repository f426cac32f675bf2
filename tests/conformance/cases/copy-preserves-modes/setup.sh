# Permission bits Docker keeps from the context (git cannot record them).
echo secret > key && chmod 600 key
printf '#!/bin/sh\necho hi\n' > run.sh && chmod 700 run.sh
printf '#!/bin/sh\n' > script.sh && chmod 750 script.sh
mkdir -p modes/private modes/shared modes/setgid
echo r > modes/readonly && chmod 444 modes/readonly
echo g > modes/group-write && chmod 664 modes/group-write
echo s > modes/suid && chmod 4755 modes/suid
echo t > modes/private/file && chmod 700 modes/private
chmod 1777 modes/shared
chmod 2755 modes/setgid
chmod 711 modes
