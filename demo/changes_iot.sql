-- Second round of the dbsync demo on the IoT source: a new column (schema drift),
-- updates that bump updated_at, inserts and one delete.
-- Afterwards: 51 devices, 5100 sensor_readings, 136 alerts, 80 maintenance_log rows.
\set ON_ERROR_STOP on
SET client_min_messages = warning;

BEGIN;

-- Schema drift: dbsync adds the column in the warehouse on the next run.
ALTER TABLE devices ADD COLUMN battery_pct smallint;

-- Two devices go to maintenance with new firmware.
UPDATE devices
   SET status = 'maintenance', firmware_version = '2.0.1', battery_pct = 64, updated_at = now()
 WHERE id IN (3, 7);

-- A new device.
INSERT INTO devices (name, device_type, location, status, firmware_version, ip_address,
                     installed_on, latitude, longitude, tags, metadata, battery_pct)
VALUES ('TMP-051', 'temperature', 'Rooftop', 'active', '2.0.1', '10.20.0.52', date '2024-06-01',
        52.5863, 13.5121, ARRAY['temperature', 'zone-4'],
        '{"vendor": "Bosch", "sampling_s": 60, "battery_powered": true}', 100);

-- Five readings corrected after a calibration.
UPDATE sensor_readings
   SET value = value + 0.5, quality = 0.5, updated_at = now()
 WHERE id BETWEEN 10 AND 14;

-- A new round of readings: two per device for devices 1..50.
INSERT INTO sensor_readings (device_id, reading_type, value, unit, quality, recorded_at)
SELECT d.id, d.device_type, round(20 + d.id / 10.0 + n, 3),
       CASE d.device_type WHEN 'temperature' THEN 'degC' WHEN 'humidity' THEN '%RH'
                          WHEN 'pressure' THEN 'hPa' WHEN 'vibration' THEN 'mm/s' ELSE 'AQI' END,
       0.99, now()
FROM devices AS d CROSS JOIN generate_series(1, 2) AS n
WHERE d.id <= 50
ORDER BY n, d.id;

-- Alerts acknowledged by the night shift, and a new critical alert.
UPDATE alerts
   SET acknowledged = true, acknowledged_by = 'night shift', acknowledged_at = now(), updated_at = now()
 WHERE id IN (1, 2, 4);
INSERT INTO alerts (device_id, reading_id, severity, message)
VALUES (3, 12, 'critical', 'pressure on PRS-003: sensor offline during calibration');

-- A maintenance visit is logged; a duplicate entry is deleted.
INSERT INTO maintenance_log (device_id, technician, action, notes, cost, performed_at, next_due)
VALUES (3, 'A. Novak', 'firmware update', 'Upgraded to 2.0.1', 120.00, now(), current_date + 180);
DELETE FROM maintenance_log WHERE id = 5;

COMMIT;
